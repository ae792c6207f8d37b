//! `node plan`, `vm guest-config`, `cluster rr-config` through the binary;
//! rendered files checked by FRR, nft and BIRD.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::Env;

fn accepted_by(tool: &str, args: &[&str], text: &str, dir: &std::path::Path) {
    let path = dir.join(format!("{tool}.conf"));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(tool)
        .args(args)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e} (scripts/test installs it)"));
    assert!(
        out.status.success(),
        "{tool}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn text(e: &Env, args: &[&str]) -> String {
    let out = e.cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn node_plans_of_the_seed_world() {
    let e = Env::new();
    e.seed_world();
    e.ok(&["vm", "create", "fab", "vm1", "--node", "node1"]);
    e.ok(&["vm", "create", "hz", "r1", "--node", "hz1", "--ipv6"]);
    e.ok(&["vm", "create", "sw", "s1", "--node", "kvm1"]);

    let p = e.ok(&["node", "plan", "node1"]);
    assert_eq!(p["type"], "ip-fabric");
    assert_eq!(p["routes"][0]["dst"], "198.51.100.0/32");
    assert_eq!(p["routes"][0]["dev"], "vm1_net0");
    assert_eq!(p["bgp"]["community"], "65000:100");
    accepted_by(
        "vtysh",
        &["--dryrun", "-f"],
        &text(&e, &["node", "plan", "node1", "--format", "frr"]),
        e.dir.path(),
    );
    accepted_by(
        "nft",
        &["-c", "-f"],
        &text(&e, &["node", "plan", "node1", "--format", "nft"]),
        e.dir.path(),
    );

    let p = e.ok(&["node", "plan", "hz1"]);
    assert_eq!(p["firewall"]["uplink_guard"]["dev"], "eno1");
    assert!(
        p["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "203.0.113.40/32" && r["dev"] == "vmbr0")
    );
    accepted_by(
        "nft",
        &["-c", "-f"],
        &text(&e, &["node", "plan", "hz1", "--format", "nft"]),
        e.dir.path(),
    );

    let p = e.ok(&["node", "plan", "kvm1"]);
    assert!(
        p["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "s1_net0" && l["master"] == "vmbr0")
    );
    let summary = text(&e, &["node", "plan", "kvm1"]);
    assert!(
        summary.contains("node kvm1 of cluster sw (switching)"),
        "{summary}"
    );

    // Files a node does not have are clear errors.
    let err = e.fails(2, &["node", "plan", "kvm1", "--format", "frr"]);
    assert!(
        err["rule"]
            .as_str()
            .unwrap()
            .contains("only nodes of ip-fabric clusters")
    );
    let err = e.fails(2, &["node", "plan", "hz1", "--format", "ndppd"]);
    assert!(err["rule"].as_str().unwrap().contains("--ndp-proxy ndppd"));
    e.fails(3, &["node", "plan", "ghost"]);
}

#[test]
fn ndppd_node() {
    let e = Env::new();
    e.ok(&["cluster", "create", "hz", "--type", "routing"]);
    e.ok(&[
        "node",
        "add",
        "hz",
        "hz1",
        "--address",
        "123.45.12.48",
        "--subnet",
        "203.0.113.40/29",
        "--ipv6",
        "2a01:4f8:13b:9a7::2/64",
        "--ndp-proxy",
        "ndppd",
        "--uplink",
        "enp3s0f0",
    ]);
    let conf = text(&e, &["node", "plan", "hz1", "--format", "ndppd"]);
    assert!(conf.contains("proxy enp3s0f0 {"), "{conf}");
    assert!(
        conf.contains("rule 2a01:4f8:13b:9a7::/64 {\n    iface vmbr0"),
        "{conf}"
    );
    let j = e.ok(&["node", "plan", "hz1", "--format", "ndppd"]);
    assert_eq!(j["format"], "ndppd");
}

#[test]
fn diff_from_an_earlier_plan() {
    let e = Env::new();
    e.seed_world();
    e.ok(&["vm", "create", "fab", "vm1", "--node", "node1"]);
    let before = e.dir.path().join("before.json");
    std::fs::write(
        &before,
        text(&e, &["node", "plan", "node1", "--format", "json"]),
    )
    .unwrap();
    let same = text(
        &e,
        &[
            "node",
            "plan",
            "node1",
            "--diff-from",
            before.to_str().unwrap(),
        ],
    );
    assert_eq!(same, "no changes\n");
    e.ok(&["vm", "create", "fab", "vm2", "--node", "node1"]);
    e.ok(&["vm", "migrate", "vm1", "--to", "node2"]);
    let d = text(
        &e,
        &[
            "node",
            "plan",
            "node1",
            "--diff-from",
            before.to_str().unwrap(),
        ],
    );
    assert!(d.contains("+ route 198.51.100.1/32 dev vm2_net0"), "{d}");
    assert!(d.contains("- route 198.51.100.0/32 dev vm1_net0"), "{d}");
    let j = e.ok(&[
        "node",
        "plan",
        "node1",
        "--diff-from",
        before.to_str().unwrap(),
    ]);
    assert!(j.as_array().unwrap().iter().any(|c| c["op"] == "add"));
    let err = e.fails(
        2,
        &[
            "node",
            "plan",
            "node2",
            "--diff-from",
            before.to_str().unwrap(),
        ],
    );
    assert!(err["rule"].as_str().unwrap().contains("plan of node node1"));
    let junk = e.dir.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    e.fails(
        2,
        &[
            "node",
            "plan",
            "node1",
            "--diff-from",
            junk.to_str().unwrap(),
        ],
    );
}

#[test]
fn guest_configs() {
    let e = Env::new();
    e.seed_world();
    e.ok(&["vm", "create", "fab", "vm1", "--node", "node1"]);
    let ci = text(&e, &["vm", "guest-config", "vm1"]);
    assert!(
        ci.contains("- 198.51.100.0/32")
            && ci.contains("gateway4: 10.0.0.1")
            && ci.contains("- to: 10.0.0.1/32"),
        "{ci}"
    );
    let x = text(&e, &["vm", "guest-config", "vm1", "--format", "libvirt"]);
    assert!(x.contains("<target dev='vm1_net0' managed='no'/>"), "{x}");
    e.ok(&[
        "cluster",
        "create",
        "lx",
        "--type",
        "switching",
        "--virtualization",
        "lxd",
    ]);
    e.ok(&["network", "add", "lx", "203.0.113.128/25"]);
    e.ok(&["node", "add", "lx", "lxd1", "--address", "203.0.113.130"]);
    e.ok(&["vm", "create", "lx", "c1", "--node", "lxd1"]);
    let err = e.fails(2, &["vm", "guest-config", "c1", "--format", "libvirt"]);
    assert!(err["rule"].as_str().unwrap().contains("lxd"));
    let err = e.fails(
        2,
        &["vm", "guest-config", "c1", "--format", "libvirt-domain"],
    );
    assert!(
        err["rule"].as_str().unwrap().contains("lxd cluster lx"),
        "{err}"
    );
    let err = e.fails(2, &["vm", "guest-config", "vm1", "--format", "lxd"]);
    assert_eq!(err["field"], "format", "{err}");
    assert!(
        err["rule"].as_str().unwrap().contains("kvm cluster fab"),
        "{err}"
    );

    // The libvirt domain: the VM's taps, its MAC, a disk placeholder or
    // the disk given; a disk that is not an absolute path is refused.
    let mac = e.ok(&["vm", "show", "vm1"])["nics"][0]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    let d = text(
        &e,
        &["vm", "guest-config", "vm1", "--format", "libvirt-domain"],
    );
    assert!(
        d.contains("<domain type='kvm'>")
            && d.contains("<name>vm1</name>")
            && d.contains("<target dev='vm1_net0' managed='no'/>")
            && d.contains(&format!("<mac address='{mac}'/>"))
            && d.contains("PLACEHOLDER"),
        "{d}"
    );
    let d = text(
        &e,
        &[
            "vm",
            "guest-config",
            "vm1",
            "--format",
            "libvirt-domain",
            "--disk",
            "/srv/vm1.qcow2",
        ],
    );
    assert!(
        d.contains("<source file='/srv/vm1.qcow2'/>") && !d.contains("PLACEHOLDER"),
        "{d}"
    );
    for bad in ["vm1.qcow2", "", "/a\tb"] {
        let err = e.fails(
            2,
            &[
                "vm",
                "guest-config",
                "vm1",
                "--format",
                "libvirt-domain",
                "--disk",
                bad,
            ],
        );
        assert_eq!(err["field"], "disk", "{err}");
        assert!(
            err["rule"].as_str().unwrap().contains("absolute path"),
            "{err}"
        );
    }
    let err = e.fails(2, &["vm", "guest-config", "vm1", "--disk", "/srv/vm1.img"]);
    assert_eq!(err["field"], "disk", "{err}");

    // LXD: the agent's veth peer with the VM's MAC, and the cloud-init
    // network-config in the instance's config.
    let c1_mac = e.ok(&["vm", "show", "c1"])["nics"][0]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    let l = text(&e, &["vm", "guest-config", "c1", "--format", "lxd"]);
    for line in [
        "  cloud-init.network-config: |\n",
        "    nictype: physical\n",
        "    parent: c1_g0\n",
        &format!("    hwaddr: \"{c1_mac}\"\n"),
        "    name: eth0\n",
    ] {
        assert!(l.contains(line), "{line} missing:\n{l}");
    }
    let p = e.ok(&["node", "plan", "lxd1"]);
    assert!(
        p["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["kind"] == "veth" && l["peer"] == "c1_g0")
    );
    e.fails(
        2,
        &[
            "cluster",
            "create",
            "x",
            "--type",
            "switching",
            "--virtualization",
            "xen",
        ],
    );
}

#[test]
fn route_reflector_configs() {
    let e = Env::new();
    e.seed_world();
    let frr = text(&e, &["cluster", "rr-config", "fab", "--peer", "172.16.0.3"]);
    assert!(
        frr.contains("neighbor 172.16.0.11 peer-group NODES")
            && frr.contains("neighbor 172.16.0.12 peer-group NODES"),
        "{frr}"
    );
    accepted_by("vtysh", &["--dryrun", "-f"], &frr, e.dir.path());
    let bird = text(
        &e,
        &[
            "cluster",
            "rr-config",
            "fab",
            "--format",
            "bird",
            "--peer",
            "172.16.0.3",
        ],
    );
    assert!(bird.contains("neighbor 172.16.0.12 as 65000;"), "{bird}");
    accepted_by("bird", &["-p", "-c"], &bird, e.dir.path());
    let err = e.fails(
        2,
        &["cluster", "rr-config", "fab", "--reflector", "172.16.0.9"],
    );
    assert!(
        err["rule"]
            .as_str()
            .unwrap()
            .contains("not a route reflector")
    );
    e.fails(2, &["cluster", "rr-config", "sw"]);
    e.fails(2, &["cluster", "rr-config", "fab", "--peer", "nope"]);
}
