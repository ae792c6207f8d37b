//! Lab scenario 4 and the agent's rules: drift behind the agent's back is
//! repaired by the next round and traffic flows again; what the agent did
//! not create survives; prerequisites and conflicts are clear errors; a
//! failed change is reported exactly and repaired next round.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::lab::{agent, agent_cmd, start_vm, vf};
use vmfabric_lab::{Lab, scenarios, worlds};

/// A provider, a routing node n1 and one VM with 203.0.113.40.
fn routed(tag: &str) -> (Lab, String, String) {
    let mut lab = Lab::new(tag).expect("lab");
    let dc = worlds::switch(&mut lab, "dc").unwrap();
    lab.ip(&dc, &["addr", "add", "192.0.2.1/26", "dev", "sw"])
        .unwrap();
    lab.sysctl(&dc, "net.ipv4.ip_forward", "1").unwrap();
    let n1 = scenarios::routed_node(&mut lab, &dc, "n1", "192.0.2.10").unwrap();
    lab.ip(
        &dc,
        &["route", "add", "203.0.113.40/29", "via", "192.0.2.10"],
    )
    .unwrap();
    vf(
        &lab,
        &[
            "cluster",
            "create",
            "hz",
            "--type",
            "routing",
            "--virtualization",
            "lxd",
        ],
    );
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
        ],
    );
    vf(&lab, &["vm", "create", "hz", "vm1", "--node", "n1"]);
    (lab, dc, n1)
}

#[test]
fn drift_is_repaired_within_the_interval() {
    let (mut lab, dc, n1) = routed("dr");
    agent(&lab, &n1, "n1");
    let vm1 = start_vm(&mut lab, &n1, "vm1");
    assert!(lab.ping(&vm1, "192.0.2.1"));

    // The agent keeps reconciling in the background.
    let mut child = agent_cmd(&lab, &n1, "n1", &["--interval", "0.2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    lab.track(child.id());
    // Break four things behind its back.
    lab.ip(&n1, &["route", "del", "203.0.113.40/32", "proto", "177"])
        .unwrap();
    lab.ip(&n1, &["addr", "del", "192.0.2.10/32", "dev", "vmbr0"])
        .unwrap();
    lab.sh(&n1, &["nft", "delete", "table", "bridge", "vmfabric"])
        .unwrap();
    lab.sysctl(&n1, "net.ipv4.ip_forward", "0").unwrap();
    let repaired = lab.wait_for(Duration::from_secs(5), || {
        let routes = lab
            .ip(&n1, &["route", "show", "proto", "177"])
            .unwrap_or_default();
        let addrs = lab
            .ip(&n1, &["addr", "show", "dev", "vmbr0"])
            .unwrap_or_default();
        let table = lab
            .sh(&n1, &["nft", "list", "table", "bridge", "vmfabric"])
            .is_ok();
        let fwd = lab
            .sh(&n1, &["sysctl", "-n", "net.ipv4.ip_forward"])
            .unwrap_or_default();
        routes.contains("203.0.113.40")
            && addrs.contains("192.0.2.10/32")
            && table
            && fwd.trim() == "1"
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(repaired, "drift not repaired within 5 s");
    assert!(lab.ping(&vm1, "192.0.2.1"), "traffic works again");
    assert!(lab.ping(&dc, "203.0.113.40"));
}

#[test]
fn what_the_agent_did_not_create_survives() {
    let (lab, _dc, n1) = routed("ow");
    // Foreign things on the node: an interface, a route, an address on the
    // uplink, an nft table, a neighbour proxy entry, and an interface whose
    // name looks like vmfabric's but was not made by it.
    lab.ip(&n1, &["link", "add", "docker0", "type", "bridge"])
        .unwrap();
    lab.ip(&n1, &["addr", "add", "172.17.0.1/16", "dev", "docker0"])
        .unwrap();
    lab.ip(
        &n1,
        &[
            "link", "add", "old_net0", "type", "veth", "peer", "name", "old_p",
        ],
    )
    .unwrap();
    lab.ip(&n1, &["route", "add", "10.99.0.0/24", "dev", "eno1"])
        .unwrap();
    lab.ip(&n1, &["addr", "add", "192.0.2.50/32", "dev", "eno1"])
        .unwrap();
    lab.ip(
        &n1,
        &[
            "-6",
            "neigh",
            "add",
            "proxy",
            "2001:db8:9::9",
            "dev",
            "eno1",
        ],
    )
    .unwrap();
    lab.sh(&n1, &["nft", "add", "table", "inet", "filter"])
        .unwrap();
    lab.sh(
        &n1,
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "filter",
            "input",
            "{ type filter hook input priority 0; }",
        ],
    )
    .unwrap();
    lab.sh(
        &n1,
        &[
            "nft", "add", "rule", "inet", "filter", "input", "tcp", "dport", "22", "accept",
        ],
    )
    .unwrap();
    let before = |what: &[&str]| lab.ip(&n1, what).unwrap();
    let links = before(&["-br", "link"]);
    agent(&lab, &n1, "n1");
    // The plan changes: the VM goes, its interface and route with it.
    vf(&lab, &["vm", "delete", "vm1"]);
    let r = agent(&lab, &n1, "n1");
    assert!(
        r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "- link vm1_net0"),
        "{r}"
    );
    for name in ["docker0", "old_net0", "old_p"] {
        assert!(
            lab.ip(&n1, &["link", "show", name]).is_ok(),
            "{name} was removed"
        );
    }
    assert!(before(&["addr", "show", "docker0"]).contains("172.17.0.1/16"));
    assert!(before(&["addr", "show", "eno1"]).contains("192.0.2.50/32"));
    assert!(before(&["route"]).contains("10.99.0.0/24"));
    assert!(before(&["-6", "neigh", "show", "proxy"]).contains("2001:db8:9::9"));
    let filter = lab
        .sh(&n1, &["nft", "list", "table", "inet", "filter"])
        .unwrap();
    assert!(filter.contains("tcp dport 22 accept"), "{filter}");
    assert!(!lab.ip(&n1, &["-br", "link"]).unwrap().contains("vm1_net0"));
    assert!(links.contains("eno1"));
}

#[test]
fn conflicts_and_missing_prerequisites_are_clear_errors() {
    let (lab, _dc, n1) = routed("pq");
    // A foreign interface holds the bridge's name.
    lab.ip(
        &n1,
        &["link", "add", "vmbr0", "type", "veth", "peer", "name", "x0"],
    )
    .unwrap();
    let out = agent_cmd(&lab, &n1, "n1", &["--once"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interface vmbr0 exists but is a veth, not the bridge vmfabric needs"),
        "{err}"
    );
    assert!(
        !lab.ip(&n1, &["-br", "link"]).unwrap().contains("vm1_net0"),
        "a refused round changed something"
    );
    lab.ip(&n1, &["link", "del", "vmbr0"]).unwrap();
    // An uplink that does not exist.
    vf(
        &lab,
        &[
            "node",
            "add",
            "hz",
            "n9",
            "--address",
            "192.0.2.19",
            "--uplink",
            "ens9",
            "--subnet",
            "203.0.113.48/29",
        ],
    );
    let out = agent_cmd(&lab, &n1, "n9", &["--once"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("uplink ens9 does not exist"));
    // Not root.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            common::lab::bin(),
            "agent",
            "--node",
            "n1",
            "--once",
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run it as root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // FRR missing on an ip-fabric node.
    vf(
        &lab,
        &[
            "cluster",
            "create",
            "fab",
            "--type",
            "ip-fabric",
            "--vm-gateway",
            "10.0.0.1",
            "--bgp-community",
            "65000:1",
            "--route-reflector",
            "172.16.0.2:65000",
        ],
    );
    vf(
        &lab,
        &[
            "node",
            "add",
            "fab",
            "f1",
            "--address",
            "172.16.0.11",
            "--uplink",
            "eno1",
        ],
    );
    let out = agent_cmd(
        &lab,
        &n1,
        "f1",
        &["--once", "--frr-reload", "/nonexistent/frr-reload.py"],
    )
    .output()
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("apt-get install frr"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_failed_change_is_reported_and_repaired_next_round() {
    let (lab, _dc, n1) = routed("pf");
    vf(&lab, &["vm", "delete", "vm1"]);
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
        ],
    );
    vf(
        &lab,
        &["vm", "create", "hz", "vm1", "--node", "n1", "--ipv6"],
    );
    // New interfaces come up without IPv6: the bridge's IPv6 address
    // cannot be added, everything else can.
    lab.sysctl(&n1, "net.ipv6.conf.default.disable_ipv6", "1")
        .unwrap();
    let out = agent_cmd(&lab, &n1, "n1", &["--once"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("changes failed"), "{err}");
    assert!(
        err.contains("+ address 2001:db8:1:1::2/64 dev vmbr0"),
        "{err}"
    );
    assert!(
        lab.ip(&n1, &["route", "show", "proto", "177"])
            .unwrap()
            .contains("203.0.113.40"),
        "the rest was applied"
    );
    // Fixed by the operator: the next round does exactly what failed.
    lab.sysctl(&n1, "net.ipv6.conf.vmbr0.disable_ipv6", "0")
        .unwrap();
    let r = agent(&lab, &n1, "n1");
    let changes: Vec<&str> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        changes.contains(&"+ address 2001:db8:1:1::2/64 dev vmbr0"),
        "{changes:?}"
    );
    for c in &changes {
        assert!(err.contains(c), "{c} was not among the failures: {err}");
    }
    assert_eq!(agent(&lab, &n1, "n1")["writes"], 0);
}

#[test]
fn dry_run_changes_nothing_and_status_reports_the_last_round() {
    let (lab, _dc, n1) = routed("dy");
    let out = agent_cmd(&lab, &n1, "n1", &["--dry-run"]).output().unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["dry_run"], true);
    let changes: Vec<&str> = r["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        changes.contains(&"+ route 203.0.113.40/32 dev vmbr0"),
        "{changes:?}"
    );
    assert_eq!(r["firewall_changed"], true);
    assert!(
        !lab.ip(&n1, &["-br", "link"]).unwrap().contains("vmbr0"),
        "a dry run created something"
    );
    assert!(
        lab.sh(&n1, &["nft", "list", "table", "bridge", "vmfabric"])
            .is_err()
    );
    agent(&lab, &n1, "n1");
    let state = lab.dir.join("agent").join("n1");
    let out = std::process::Command::new(common::lab::bin())
        .args(["--output", "json", "agent", "status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["node"], "n1");
    assert!(!s["changes"].as_array().unwrap().is_empty(), "{s}");
}

#[test]
fn kvm_nodes_get_persistent_taps_on_the_bridge() {
    let mut lab = Lab::new("tp").expect("lab");
    let dc = worlds::switch(&mut lab, "dc").unwrap();
    let n1 = worlds::node(&mut lab, &dc, "n1", "eno1").unwrap();
    vf(
        &lab,
        &[
            "cluster",
            "create",
            "k",
            "--type",
            "switching",
            "--virtualization",
            "kvm",
        ],
    );
    vf(&lab, &["network", "add", "k", "192.0.2.0/27"]);
    vf(
        &lab,
        &[
            "node",
            "add",
            "k",
            "n1",
            "--address",
            "192.0.2.2",
            "--uplink",
            "eno1",
        ],
    );
    let vm = vf(
        &lab,
        &["vm", "create", "k", "customer-webserver-01", "--node", "n1"],
    );
    let ifname = vm["nics"][0]["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    let guest_mac = vm["nics"][0]["mac"].as_str().unwrap().to_string();
    agent(&lab, &n1, "n1");
    let d = lab.ip(&n1, &["-d", "link", "show", &ifname]).unwrap();
    assert!(d.contains("tun type tap") && d.contains("persist"), "{d}");
    assert!(d.contains("master vmbr0"), "{d}");
    assert!(
        d.contains(&format!("fe{}", &guest_mac[2..])),
        "host side MAC: {d}"
    );
    assert!(
        lab.ip(&n1, &["-d", "link", "show", "eno1"])
            .unwrap()
            .contains("master vmbr0")
    );
    assert_eq!(agent(&lab, &n1, "n1")["writes"], 0);
    vf(&lab, &["vm", "delete", "customer-webserver-01"]);
    agent(&lab, &n1, "n1");
    assert!(
        lab.ip(&n1, &["link", "show", &ifname]).is_err(),
        "the tap went with its VM"
    );
}

#[test]
fn lab_up_status_down() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("lab");
    let run = |args: &[&str]| {
        std::process::Command::new(common::lab::bin())
            .args(["--output", "json", "lab"])
            .args(args)
            .arg("--dir")
            .arg(&d)
            .output()
            .unwrap()
    };
    let up = run(&["up", "switching"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let t: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    let vm1 = t["ns"]["vm1"].as_str().unwrap().to_string();
    let ping = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &vm1,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "192.0.2.1",
        ])
        .output()
        .unwrap();
    assert!(ping.status.success(), "vm1 -> gateway in a lab that is up");
    assert!(
        !run(&["up", "switching"]).status.success(),
        "a second up must refuse"
    );
    let st = run(&["status", "switching"]);
    let s: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert!(
        s["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["up"] == true),
        "{s}"
    );
    assert!(run(&["down", "switching"]).status.success());
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(&vm1),
        "namespaces left behind"
    );
}

/// `ip -j link show DEV` in `ns`: (ifindex, MAC), or None when absent.
fn link_of(lab: &Lab, ns: &str, dev: &str) -> Option<(u64, String)> {
    let out = lab.ip(ns, &["-j", "link", "show", dev]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    Some((
        v[0]["ifindex"].as_u64()?,
        v[0]["address"].as_str()?.to_string(),
    ))
}

/// LXD clusters: the agent creates each veth pair with the VM's MAC on the
/// peer, so the anti-spoofing rules (keyed on that MAC) let the guest's
/// traffic through whatever the hypervisor does; the peer may leave for
/// the container's namespace and come back (as LXD's `nictype: physical`
/// does on start and stop) without the agent failing or recreating the
/// pair; a peer back on the node with another MAC gets the VM's again.
#[test]
fn lxd_veth_peers_carry_the_vm_mac_wherever_they_are() {
    let (mut lab, _dc, n1) = routed("vp");
    let vm = vf(&lab, &["vm", "show", "vm1"]);
    let mac = vm["nics"][0]["mac"].as_str().unwrap().to_string();
    let first = agent(&lab, &n1, "n1");
    assert_eq!(first["failures"], serde_json::json!([]), "{first}");
    let (host, _) = link_of(&lab, &n1, "vm1_net0").expect("host side");
    let (_, peer_mac) = link_of(&lab, &n1, "vm1_g0").expect("peer on the node");
    assert_eq!(peer_mac, mac, "the peer is born with the VM's MAC");

    // The hypervisor's part, by hand: the peer into the guest's namespace,
    // addressed as the plan says, its MAC untouched.
    let g = lab.add_ns("g1").unwrap();
    lab.ip(&n1, &["link", "set", "vm1_g0", "netns", &g])
        .unwrap();
    for args in [
        &["link", "set", "vm1_g0", "up"][..],
        &["addr", "add", "203.0.113.40/32", "dev", "vm1_g0"],
        &["route", "add", "192.0.2.10", "dev", "vm1_g0"],
        &["route", "add", "default", "via", "192.0.2.10"],
    ] {
        lab.ip(&g, args).unwrap();
    }
    // The peer is away: nothing to do, nothing failed, the pair is the same.
    let away = agent(&lab, &n1, "n1");
    assert_eq!(away["failures"], serde_json::json!([]), "{away}");
    assert_eq!(away["changes"], serde_json::json!([]), "{away}");
    assert_eq!(link_of(&lab, &n1, "vm1_net0").map(|l| l.0), Some(host));
    assert!(
        lab.ping(&g, "192.0.2.1"),
        "the guest's traffic passes anti-spoofing with the MAC the agent set"
    );
    // The check can fail: another MAC on the guest side is dropped.
    lab.ip(
        &g,
        &["link", "set", "vm1_g0", "address", "02:00:00:00:66:66"],
    )
    .unwrap();
    assert!(
        !lab.ping_once(&g, "192.0.2.1"),
        "a foreign MAC must be dropped by anti-spoofing"
    );

    // Back on the node (as when the container stops) with the wrong MAC:
    // the agent gives the VM's back and leaves the pair in place.
    lab.ip(&g, &["link", "set", "vm1_g0", "netns", &n1])
        .unwrap();
    let back = agent(&lab, &n1, "n1");
    assert_eq!(back["failures"], serde_json::json!([]), "{back}");
    assert_eq!(
        back["changes"],
        serde_json::json!([format!("~ link vm1_g0 mac {mac}")]),
        "{back}"
    );
    assert_eq!(link_of(&lab, &n1, "vm1_g0").map(|l| l.1), Some(mac));
    assert_eq!(link_of(&lab, &n1, "vm1_net0").map(|l| l.0), Some(host));
    assert_eq!(agent(&lab, &n1, "n1")["writes"], 0);
}
