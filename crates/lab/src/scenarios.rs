//! The three scenarios, set up from nothing: the world, then vmfabric's
//! clusters (through its command line), then one agent round per node,
//! then the VMs started. Shared by the tests and `vmfabric lab up`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::guest::{GuestAddress, GuestNic, attach};
use crate::worlds::{self, Frr};
use crate::{Error, Lab, Result};

/// How the lab reaches vmfabric: its binary and database.
#[derive(Debug, Clone)]
pub struct Vmfabric {
    pub bin: PathBuf,
    pub db: PathBuf,
}

/// What a scenario built, by role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Topology {
    pub scenario: String,
    /// Namespaces by short name (dc, n1, vm1, core, ...).
    pub ns: BTreeMap<String, String>,
    /// FRR folders (config and vty sockets) by short name.
    pub frr: BTreeMap<String, PathBuf>,
    /// Which node each VM was started on.
    pub vms: BTreeMap<String, String>,
    pub db: PathBuf,
    pub dir: PathBuf,
}

impl Topology {
    pub fn ns(&self, short: &str) -> &str {
        self.ns.get(short).map_or("", String::as_str)
    }

    pub fn frr(&self, short: &str) -> Option<Frr> {
        Some(Frr {
            ns: self.ns.get(short)?.clone(),
            dir: self.frr.get(short)?.clone(),
        })
    }
}

impl Vmfabric {
    /// `vmfabric --db DB -o json ARGS`.
    pub fn run(&self, args: &[&str]) -> Result<Value> {
        let out = Command::new(&self.bin)
            .arg("--db")
            .arg(&self.db)
            .args(["--output", "json"])
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(Error::Command {
                cmd: format!("vmfabric {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    }

    /// The agent's command for `node` in namespace `ns`, state in the lab.
    pub fn agent_cmd(&self, lab: &Lab, ns: &str, node: &str, extra: &[&str]) -> Command {
        let db = self.db.to_string_lossy();
        self.agent_cmd_from(lab, ns, node, &["--db", &db], extra)
    }

    /// The agent's command with its plan from `source` (`--db DB`, or
    /// `--server URL --token T`).
    pub fn agent_cmd_from(
        &self,
        lab: &Lab,
        ns: &str,
        node: &str,
        source: &[&str],
        extra: &[&str],
    ) -> Command {
        let state = lab.dir.join("agent").join(node);
        let frr = lab.dir.join("frr").join(ns);
        let mut c = lab.exec(ns, &self.bin.to_string_lossy());
        c.args(source)
            .args(["--output", "json", "agent", "--node", node])
            .arg("--state-dir")
            .arg(&state)
            .arg("--frr-dir")
            .arg(&frr)
            .arg("--frr-socket")
            .arg(&frr)
            .arg("--ndppd-conf")
            .arg(state.join("ndppd.conf"))
            .arg("--ndppd-pid")
            .arg(state.join("ndppd.pid"))
            .args(extra);
        c
    }

    /// One agent round on `node`.
    pub fn agent(&self, lab: &Lab, ns: &str, node: &str) -> Result<Value> {
        let out = self.agent_cmd(lab, ns, node, &["--once"]).output()?;
        if !out.status.success() {
            return Err(Error::Command {
                cmd: format!("agent on {node}"),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    }

    /// The guest's view of VM `name`'s first NIC.
    pub fn nic(&self, name: &str) -> Result<GuestNic> {
        self.nic_at(name, 0)
    }

    /// NIC `index` of VM `name`, as the guest sees it.
    pub fn nic_at(&self, name: &str, index: u8) -> Result<GuestNic> {
        let v = self.run(&["vm", "show", name])?;
        let bad = || Error::Missing(format!("vm show {name}: no NIC {index}"));
        let n = v["nics"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|n| n["index"].as_u64() == Some(u64::from(index)))
            })
            .ok_or_else(bad)?;
        let bad = || Error::Missing(format!("vm show {name}: unexpected output"));
        let host = n["host_interface"].as_str().ok_or_else(bad)?.to_string();
        let mut addresses = Vec::new();
        for a in n["addresses"].as_array().ok_or_else(bad)? {
            addresses.push(GuestAddress {
                address: a["address"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(bad)?,
                prefix_len: a["prefix_len"]
                    .as_u64()
                    .and_then(|p| u8::try_from(p).ok())
                    .ok_or_else(bad)?,
                gateway: a["gateway"].as_str().and_then(|g| g.parse().ok()),
            });
        }
        Ok(GuestNic {
            peer: match host.rsplit_once("_net") {
                Some((p, n)) => format!("{p}_g{n}"),
                None => format!("{host}g"),
            },
            host_interface: host,
            mac: n["mac"].as_str().ok_or_else(bad)?.to_string(),
            index,
            addresses,
        })
    }

    /// Start VM `name` on node namespace `node_ns`.
    pub fn start_vm(
        &self,
        lab: &mut Lab,
        topo: &mut Topology,
        node: &str,
        name: &str,
    ) -> Result<String> {
        let nic = self.nic(name)?;
        let ns = attach(lab, topo.ns(node), name, &nic)?;
        topo.ns.insert(name.to_string(), ns.clone());
        topo.vms.insert(name.to_string(), node.to_string());
        Ok(ns)
    }

    /// The first IPv6 address of VM `name`.
    pub fn ipv6_of(&self, name: &str) -> Result<String> {
        let v = self.run(&["vm", "show", name])?;
        v["nics"][0]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["address"].as_str())
            .find(|a| a.contains(':'))
            .map(String::from)
            .ok_or_else(|| Error::Missing(format!("{name} has no IPv6 address")))
    }

    /// The first address of VM `name`.
    pub fn ip_of(&self, name: &str) -> Result<String> {
        let v = self.run(&["vm", "show", name])?;
        v["nics"][0]["addresses"][0]["address"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| Error::Missing(format!("{name} has no address")))
    }
}

/// A new topology, its database created (`vmfabric init`).
fn topology(lab: &Lab, vf: &Vmfabric, scenario: &str) -> Result<Topology> {
    vf.run(&["init"])?;
    Ok(Topology {
        scenario: scenario.to_string(),
        db: vf.db.clone(),
        dir: lab.dir.clone(),
        ..Topology::default()
    })
}

/// Switching: a data-center switch holding the gateways of the seed's two
/// /27 blocks, two bridged nodes, vm1 and vm3 on n1, vm2 on n2.
pub fn switching(lab: &mut Lab, vf: &Vmfabric) -> Result<Topology> {
    let mut t = switching_world(lab, vf, "lxd")?;
    for (vm, n) in [("vm1", "n1"), ("vm2", "n2"), ("vm3", "n1")] {
        vf.start_vm(lab, &mut t, n, vm)?;
    }
    Ok(t)
}

/// Switching for real guests: the same world as [`switching`] in a KVM
/// cluster, so the agent makes a persistent tap per VM (`<vm>_net0`) on
/// the node's bridge; no VM is started: QEMU boots the guests on the taps
/// (`crate::qemu`).
pub fn switching_kvm(lab: &mut Lab, vf: &Vmfabric) -> Result<Topology> {
    switching_world(lab, vf, "kvm")
}

/// [`switching`] for real LXD containers: the agents made the veth pairs,
/// no VM is started (LXD attaches the peers, `crate::lxd`).
pub fn switching_lxd(lab: &mut Lab, vf: &Vmfabric) -> Result<Topology> {
    switching_world(lab, vf, "lxd")
}

/// The switching world, cluster, nodes and VMs, agents run once.
fn switching_world(lab: &mut Lab, vf: &Vmfabric, virtualization: &str) -> Result<Topology> {
    let mut t = topology(lab, vf, "switching")?;
    let dc = worlds::switch(lab, "dc")?;
    lab.ip(&dc, &["addr", "add", "192.0.2.1/27", "dev", "sw"])?;
    lab.ip(&dc, &["addr", "add", "192.0.2.33/27", "dev", "sw"])?;
    lab.sysctl(&dc, "net.ipv4.ip_forward", "1")?;
    t.ns.insert("dc".into(), dc.clone());
    for n in ["n1", "n2"] {
        t.ns.insert(n.into(), worlds::node(lab, &dc, n, "eno1")?);
    }
    vf.run(&[
        "cluster",
        "create",
        "rack",
        "--type",
        "switching",
        "--virtualization",
        virtualization,
    ])?;
    vf.run(&["network", "add", "rack", "192.0.2.0/27"])?;
    vf.run(&[
        "network",
        "add",
        "rack",
        "192.0.2.32/27",
        "--gateway",
        "192.0.2.33",
    ])?;
    vf.run(&[
        "node",
        "add",
        "rack",
        "n1",
        "--address",
        "192.0.2.2",
        "--uplink",
        "eno1",
    ])?;
    vf.run(&[
        "node",
        "add",
        "rack",
        "n2",
        "--address",
        "192.0.2.3",
        "--uplink",
        "eno1",
    ])?;
    vf.run(&["vm", "create", "rack", "vm1", "--node", "n1"])?;
    vf.run(&["vm", "create", "rack", "vm2", "--node", "n2"])?;
    vf.run(&[
        "vm",
        "create",
        "rack",
        "vm3",
        "--node",
        "n1",
        "--ip",
        "192.0.2.40",
    ])?;
    for n in ["n1", "n2"] {
        vf.agent(lab, t.ns(n), n)?;
    }
    for (vm, n) in [("vm1", "n1"), ("vm2", "n2"), ("vm3", "n1")] {
        t.vms.insert(vm.to_string(), n.to_string());
    }
    Ok(t)
}

/// Routing: a provider router (gateway 192.0.2.1/26 and an on-link IPv6
/// /64 with fe80::1 and ::1) with port security on the node's port and
/// 203.0.113.40/29 routed to the node's primary IP 192.0.2.10.
pub fn routing(lab: &mut Lab, vf: &Vmfabric, ndp: &str) -> Result<Topology> {
    let mut t = routing_world(lab, vf, ndp, "lxd")?;
    for vm in ["vm1", "vm2"] {
        vf.start_vm(lab, &mut t, "n1", vm)?;
    }
    settle_ipv6(lab, &t)?;
    Ok(t)
}

/// [`routing`] for real guests: a KVM cluster, so the agent makes a
/// persistent tap per VM; no VM is started (QEMU boots the guests on the
/// taps, `crate::qemu`).
pub fn routing_kvm(lab: &mut Lab, vf: &Vmfabric, ndp: &str) -> Result<Topology> {
    let t = routing_world(lab, vf, ndp, "kvm")?;
    settle_ipv6(lab, &t)?;
    Ok(t)
}

/// [`routing`] for real LXD containers: the agent made the veth pairs, no
/// VM is started (LXD attaches the peers, `crate::lxd`).
pub fn routing_lxd(lab: &mut Lab, vf: &Vmfabric, ndp: &str) -> Result<Topology> {
    let t = routing_world(lab, vf, ndp, "lxd")?;
    settle_ipv6(lab, &t)?;
    Ok(t)
}

/// IPv6 through the NDP proxy needs the link-local addresses on the path
/// out of duplicate address detection.
fn settle_ipv6(lab: &Lab, t: &Topology) -> Result<()> {
    for ns in t.ns.values() {
        if !lab.ipv6_settled(ns, Duration::from_secs(10)) {
            return Err(Error::Missing(format!(
                "IPv6 addresses in {ns} still tentative after 10 s"
            )));
        }
    }
    Ok(())
}

fn routing_world(
    lab: &mut Lab,
    vf: &Vmfabric,
    ndp: &str,
    virtualization: &str,
) -> Result<Topology> {
    let mut t = topology(lab, vf, "routing")?;
    let dc = worlds::switch(lab, "dc")?;
    lab.ip(&dc, &["addr", "add", "192.0.2.1/26", "dev", "sw"])?;
    lab.ip(
        &dc,
        &["-6", "addr", "add", "fe80::1/64", "dev", "sw", "nodad"],
    )?;
    lab.ip(
        &dc,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:1:1::1/64",
            "dev",
            "sw",
            "nodad",
        ],
    )?;
    lab.sysctl(&dc, "net.ipv4.ip_forward", "1")?;
    lab.sysctl(&dc, "net.ipv6.conf.all.forwarding", "1")?;
    t.ns.insert("dc".into(), dc.clone());
    let n1 = routed_node(lab, &dc, "n1", "192.0.2.10")?;
    lab.ip(
        &dc,
        &["route", "add", "203.0.113.40/29", "via", "192.0.2.10"],
    )?;
    t.ns.insert("n1".into(), n1.clone());
    vf.run(&[
        "cluster",
        "create",
        "hz",
        "--type",
        "routing",
        "--virtualization",
        virtualization,
    ])?;
    vf.run(&[
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
        ndp,
    ])?;
    vf.run(&["vm", "create", "hz", "vm1", "--node", "n1", "--ipv6"])?;
    vf.run(&["vm", "create", "hz", "vm2", "--node", "n1"])?;
    vf.agent(lab, &n1, "n1")?;
    for vm in ["vm1", "vm2"] {
        t.vms.insert(vm.to_string(), "n1".to_string());
    }
    Ok(t)
}

/// A node as a provider hands it over: primary IP and default route on
/// the uplink, port security on its switch port. Returns the namespace.
pub fn routed_node(lab: &mut Lab, dc: &str, short: &str, primary: &str) -> Result<String> {
    let ns = worlds::node(lab, dc, short, "eno1")?;
    lab.ip(
        &ns,
        &["addr", "add", &format!("{primary}/26"), "dev", "eno1"],
    )?;
    lab.ip(&ns, &["route", "add", "default", "via", "192.0.2.1"])?;
    let mac = worlds::mac(lab, &ns, "eno1")?;
    worlds::port_security(lab, dc, &format!("p-{short}"), &mac)?;
    Ok(ns)
}

/// The core router's FRR: iBGP with both reflectors.
pub const CORE: &str = "frr defaults datacenter
hostname core
ip forwarding
no ipv6 forwarding
!
router bgp 65000
 bgp router-id 172.16.0.3
 no bgp default ipv4-unicast
 neighbor 172.16.0.2 remote-as 65000
 neighbor 172.16.0.2 timers 3 9
 neighbor 172.16.0.2 timers connect 5
 neighbor 172.16.0.4 remote-as 65000
 neighbor 172.16.0.4 timers 3 9
 neighbor 172.16.0.4 timers connect 5
 address-family ipv4 unicast
  neighbor 172.16.0.2 activate
  neighbor 172.16.0.4 activate
 exit-address-family
exit
!
";

/// The core router's FRR on a dual-stack underlay: the same IPv4 sessions
/// with both reflectors carry IPv6 routes too.
pub const CORE6: &str = "frr defaults datacenter
hostname core
ip forwarding
ipv6 forwarding
!
router bgp 65000
 bgp router-id 172.16.0.3
 no bgp default ipv4-unicast
 neighbor 172.16.0.2 remote-as 65000
 neighbor 172.16.0.2 timers 3 9
 neighbor 172.16.0.2 timers connect 5
 neighbor 172.16.0.4 remote-as 65000
 neighbor 172.16.0.4 timers 3 9
 neighbor 172.16.0.4 timers connect 5
 address-family ipv4 unicast
  neighbor 172.16.0.2 activate
  neighbor 172.16.0.4 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor 172.16.0.2 activate
  neighbor 172.16.0.4 activate
 exit-address-family
exit
!
";

/// IP-fabric: a fabric switch, nodes n1 and n2, route reflectors rr1 (FRR)
/// and rr2 (BIRD 2) configured from `vmfabric cluster rr-config`, a core
/// router peered to both; vm1 and vm3 on n1, vm2 on n2.
pub fn fabric(lab: &mut Lab, vf: &Vmfabric) -> Result<Topology> {
    let mut t = fabric_world(lab, vf, false, "lxd")?;
    start_fabric_vms(lab, vf, &mut t, false)?;
    Ok(t)
}

/// The IPv6 fabric of the underlay: every router of the fabric has an
/// address here besides its IPv4 one (`FABRIC6` + the IPv4 host number).
pub const FABRIC6: &str = "2001:db8:f::";
/// The cluster's IPv6 pool in [`fabric_dual_stack`].
pub const POOL6: &str = "2001:db8:77::/64";

/// IP-fabric with IPv6, as the FRR renderer's note describes: the same
/// world as [`fabric`] on a dual-stack underlay (each node, reflector and
/// the core also has `2001:db8:f::N/64` on its uplink), a second pool
/// network `2001:db8:77::/64`, and every VM created with `--ipv6`. The
/// FRR reflector runs zebra besides bgpd: without it, bgpd cannot take the
/// nodes' link-local second next hop and resets the session.
pub fn fabric_dual_stack(lab: &mut Lab, vf: &Vmfabric) -> Result<Topology> {
    let mut t = fabric_world(lab, vf, true, "lxd")?;
    start_fabric_vms(lab, vf, &mut t, true)?;
    Ok(t)
}

/// [`fabric_dual_stack`] for real guests: a KVM cluster, so the agent
/// makes a persistent tap per VM; no VM is started (QEMU boots the guests
/// on the taps, `crate::qemu`), so the core learns no route until
/// [`wait_core_routes`] sees the guests' routes arrive.
pub fn fabric_dual_stack_kvm(lab: &mut Lab, vf: &Vmfabric) -> Result<Topology> {
    fabric_world(lab, vf, true, "kvm")
}

/// [`fabric_dual_stack`] for real LXD containers: the agents made the
/// veth pairs, no VM is started (LXD attaches the peers, `crate::lxd`).
pub fn fabric_dual_stack_lxd(lab: &mut Lab, vf: &Vmfabric) -> Result<Topology> {
    fabric_world(lab, vf, true, "lxd")
}

fn start_fabric_vms(lab: &mut Lab, vf: &Vmfabric, t: &mut Topology, six: bool) -> Result<()> {
    for (vm, n) in [("vm1", "n1"), ("vm2", "n2"), ("vm3", "n1")] {
        vf.start_vm(lab, t, n, vm)?;
    }
    for vm in ["vm1", "vm2", "vm3"] {
        if six {
            lab.ipv6_settled(t.ns(vm), std::time::Duration::from_secs(10));
        }
    }
    // The agent announces a VM only while its link has carrier, which the
    // VMs just brought: a running agent would react at once, the lab's
    // one-round agents run now.
    for n in ["n1", "n2"] {
        vf.agent(lab, t.ns(n), n)?;
    }
    wait_core_routes(lab, vf, t, &["vm1", "vm2", "vm3"], six, 60)
}

/// Wait until the core routes to each of `vms` (its /32, and /128 when
/// `six`): BGP needs a moment.
pub fn wait_core_routes(
    lab: &Lab,
    vf: &Vmfabric,
    t: &Topology,
    vms: &[&str],
    six: bool,
    seconds: u64,
) -> Result<()> {
    let core = t.ns("core");
    for vm in vms {
        let mut prefixes = vec![format!("{}/32", vf.ip_of(vm)?)];
        if six {
            prefixes.push(format!("{}/128", vf.ipv6_of(vm)?));
        }
        let routed = lab.wait_for(std::time::Duration::from_secs(seconds), || {
            prefixes.iter().all(|p| {
                let family = if p.contains(':') { "-6" } else { "-4" };
                lab.ip(core, &[family, "route", "show", p])
                    .is_ok_and(|r| !r.trim().is_empty())
            })
        });
        if !routed {
            return Err(Error::Missing(format!(
                "{vm}'s routes {prefixes:?} did not reach the core within {seconds} s"
            )));
        }
    }
    Ok(())
}

fn fabric_world(lab: &mut Lab, vf: &Vmfabric, six: bool, virtualization: &str) -> Result<Topology> {
    let mut t = topology(lab, vf, if six { "fabric-dual-stack" } else { "fabric" })?;
    let fab = worlds::switch(lab, "fab")?;
    t.ns.insert("fab".into(), fab.clone());
    for (short, addr) in [
        ("n1", "172.16.0.11"),
        ("n2", "172.16.0.12"),
        ("rr1", "172.16.0.2"),
        ("core", "172.16.0.3"),
        ("rr2", "172.16.0.4"),
    ] {
        let n = worlds::node(lab, &fab, short, "uplink0")?;
        lab.ip(
            &n,
            &["addr", "add", &format!("{addr}/24"), "dev", "uplink0"],
        )?;
        if six {
            let host = addr.rsplit('.').next().unwrap_or_default();
            lab.ip(
                &n,
                &[
                    "-6",
                    "addr",
                    "add",
                    &format!("{FABRIC6}{host}/64"),
                    "dev",
                    "uplink0",
                    "nodad",
                ],
            )?;
        }
        t.ns.insert(short.into(), n);
    }
    vf.run(&[
        "cluster",
        "create",
        "fab",
        "--type",
        "ip-fabric",
        "--virtualization",
        virtualization,
        "--vm-gateway",
        "10.0.0.1",
        "--bgp-community",
        "65000:100",
        "--route-reflector",
        "172.16.0.2:65000",
        "--route-reflector",
        "172.16.0.4:65000",
    ])?;
    vf.run(&["network", "add", "fab", "198.51.100.0/24"])?;
    if six {
        vf.run(&["network", "add", "fab", POOL6])?;
    }
    vf.run(&[
        "node",
        "add",
        "fab",
        "n1",
        "--address",
        "172.16.0.11",
        "--uplink",
        "uplink0",
    ])?;
    vf.run(&[
        "node",
        "add",
        "fab",
        "n2",
        "--address",
        "172.16.0.12",
        "--uplink",
        "uplink0",
    ])?;
    let text = |v: Value| v["text"].as_str().unwrap_or_default().to_string();
    let rr1 = text(vf.run(&[
        "cluster",
        "rr-config",
        "fab",
        "--reflector",
        "172.16.0.2",
        "--peer",
        "172.16.0.3",
    ])?);
    let rr2 = text(vf.run(&[
        "cluster",
        "rr-config",
        "fab",
        "--format",
        "bird",
        "--reflector",
        "172.16.0.4",
        "--peer",
        "172.16.0.3",
    ])?);
    let rr1_daemons: &[&str] = if six { &["zebra", "bgpd"] } else { &["bgpd"] };
    let f = worlds::frr_up(lab, t.ns("rr1"), rr1_daemons, &rr1)?;
    t.frr.insert("rr1".into(), f.dir);
    worlds::bird_up(lab, t.ns("rr2"), &rr2)?;
    let core = t.ns("core").to_string();
    let f = worlds::frr_up(
        lab,
        &core,
        &["zebra", "bgpd"],
        if six { CORE6 } else { CORE },
    )?;
    t.frr.insert("core".into(), f.dir);
    // Nodes run FRR with an empty configuration: the agent writes theirs.
    for n in ["n1", "n2"] {
        let ns = t.ns(n).to_string();
        let f = worlds::frr_up(lab, &ns, &["zebra", "bgpd", "staticd"], "")?;
        t.frr.insert(n.into(), f.dir);
    }
    for (vm, n) in [("vm1", "n1"), ("vm2", "n2"), ("vm3", "n1")] {
        let mut args = vec!["vm", "create", "fab", vm, "--node", n];
        if six {
            args.push("--ipv6");
        }
        vf.run(&args)?;
    }
    for n in ["n1", "n2"] {
        vf.agent(lab, t.ns(n), n)?;
    }
    for (vm, n) in [("vm1", "n1"), ("vm2", "n2"), ("vm3", "n1")] {
        t.vms.insert(vm.to_string(), n.to_string());
    }
    Ok(t)
}
