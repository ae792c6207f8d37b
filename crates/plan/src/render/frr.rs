//! FRR configurations: the node's `frr.conf`, and the route reflectors'.
//!
//! # IPv6 next hops: a dual-stack underlay
//!
//! Nodes peer with the route reflectors over IPv4 (the reflectors are IPv4
//! addresses). When the cluster's pool holds IPv6, the same sessions also
//! carry `address-family ipv6 unicast` (multiprotocol BGP, RFC 4760), and
//! the next hop of a VM's /128 is the node's **global IPv6 address on its
//! uplink**: bgpd takes it from the interface the session leaves by, with
//! no per-node configuration in this file. The underlay is therefore
//! dual-stack: every node, reflector and the core have an IPv6 address on
//! the fabric, just as they have an IPv4 one, and the core resolves the
//! next hop in its ordinary IPv6 table.
//!
//! Not RFC 5549/8950 ("extended next hop"): that carries IPv4 routes over
//! IPv6 next hops, the opposite direction. Its mirror (IPv6 routes with an
//! IPv4-mapped next hop) would need the core and every node to install IPv6
//! routes through IPv4 gateways; it was not tried. Without an IPv6 address on
//! the uplink, bgpd sends its link-local address as the only next hop;
//! seen in the lab (FRR 8.4, BIRD 2.0.12, kernel 6.18): the FRR reflector
//! replaced it with its own address, the BIRD reflector dropped the route,
//! and the core's pings were lost, 100%. With the dual-stack underlay both
//! reflectors pass the node's address on and nothing is lost.
//!
//! Also seen there: bgpd adds the uplink's link-local address as a second
//! next hop on self-originated IPv6 routes. An FRR reflector started
//! without zebra (`bgpd -Z`) cannot place a link-local next hop on an
//! interface, treats the update as malformed and resets the session (IPv4
//! routes included): an FRR reflector of IPv6 routes runs zebra too.

use std::fmt::Write;
use std::net::IpAddr;

use vmfabric_model::{Cluster, Node};

use crate::types::{Bgp, NodePlan};

const EXPORT_V4: &str = "VMFABRIC-EXPORT-V4";
const EXPORT_V6: &str = "VMFABRIC-EXPORT-V6";
const POOL_V4: &str = "VMFABRIC-POOL-V4";
const POOL_V6: &str = "VMFABRIC-POOL-V6";

/// Timers for fast convergence: keepalive 3 s, hold 9 s, reconnect 5 s
/// (FRR's `datacenter` profile, written out so the file says what it does).
const TIMERS: &str = "timers 3 9";
const CONNECT: &str = "timers connect 5";

/// The node's frr.conf, or `None` for nodes that run no BGP.
pub fn node(plan: &NodePlan) -> Option<String> {
    let bgp = plan.bgp.as_ref()?;
    Some(node_conf(bgp))
}

fn node_conf(b: &Bgp) -> String {
    let mut s = String::new();
    let v6 = !b.pool_v6.is_empty();
    let _ = writeln!(
        s,
        "! frr.conf of node {}, written by vmfabric: edits are replaced",
        b.hostname
    );
    s.push_str("frr defaults datacenter\n");
    let _ = writeln!(s, "hostname {}", b.hostname);
    s.push_str("service integrated-vtysh-config\n");
    // frr-reload "fixes" forwarding it does not see in the file: say it.
    s.push_str("ip forwarding\n");
    s.push_str(if v6 {
        "ipv6 forwarding\n"
    } else {
        "no ipv6 forwarding\n"
    });
    s.push_str("!\n");
    for (i, p) in b.pool_v4.iter().enumerate() {
        let _ = writeln!(
            s,
            "ip prefix-list {POOL_V4} seq {} permit {p} ge 32",
            (i + 1) * 10
        );
    }
    for (i, p) in b.pool_v6.iter().enumerate() {
        let _ = writeln!(
            s,
            "ipv6 prefix-list {POOL_V6} seq {} permit {p} ge 128",
            (i + 1) * 10
        );
    }
    s.push_str("!\n");
    // Only host routes of the cluster's pool leave the node, with the
    // cluster's community; everything else is denied by the route-map.
    let _ = writeln!(
        s,
        "route-map {EXPORT_V4} permit 10\n match ip address prefix-list {POOL_V4}\n set community {}\nexit\n!",
        b.community
    );
    if v6 {
        let _ = writeln!(
            s,
            "route-map {EXPORT_V6} permit 10\n match ipv6 address prefix-list {POOL_V6}\n set community {}\nexit\n!",
            b.community
        );
    }
    let _ = writeln!(s, "router bgp {}", b.asn);
    let _ = writeln!(s, " bgp router-id {}", b.router_id);
    s.push_str(" bgp log-neighbor-changes\n");
    s.push_str(" no bgp default ipv4-unicast\n");
    for n in &b.neighbors {
        let _ = writeln!(s, " neighbor {} remote-as {}", n.address, n.asn);
        let _ = writeln!(s, " neighbor {} description route reflector", n.address);
        let _ = writeln!(s, " neighbor {} {TIMERS}", n.address);
        let _ = writeln!(s, " neighbor {} {CONNECT}", n.address);
    }
    s.push_str(" !\n address-family ipv4 unicast\n");
    let _ = writeln!(s, "  redistribute kernel route-map {EXPORT_V4}");
    for n in b.neighbors.iter().filter(|n| n.address.is_ipv4()) {
        let _ = writeln!(s, "  neighbor {} activate", n.address);
        let _ = writeln!(s, "  neighbor {} send-community", n.address);
    }
    s.push_str(" exit-address-family\n");
    if v6 {
        s.push_str(" !\n address-family ipv6 unicast\n");
        let _ = writeln!(s, "  redistribute kernel route-map {EXPORT_V6}");
        // Every reflector, IPv4 ones included: IPv6 routes ride the same
        // sessions, with the node's uplink IPv6 address as next hop.
        for n in &b.neighbors {
            let _ = writeln!(s, "  neighbor {} activate", n.address);
            let _ = writeln!(s, "  neighbor {} send-community", n.address);
        }
        s.push_str(" exit-address-family\n");
    }
    s.push_str("exit\n!\n");
    s
}

/// A route reflector's frr.conf for an IP-fabric cluster: every node of the
/// cluster as a route-reflector client, the seed's "add every node and the
/// ASN to the reflectors", generated. `peers` are non-client iBGP peers
/// such as the data-center core, which learns the VM routes from here.
pub fn reflector(
    cluster: &Cluster,
    nodes: &[Node],
    rr: IpAddr,
    peers: &[IpAddr],
) -> Option<String> {
    let f = cluster.fabric.as_ref()?;
    let me = f.route_reflectors.iter().find(|r| r.address == rr)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "! route reflector {} of cluster {}, written by vmfabric",
        rr, cluster.name
    );
    s.push_str("frr defaults datacenter\n");
    let _ = writeln!(s, "hostname rr-{}", rr.to_string().replace([':', '.'], "-"));
    s.push_str("service integrated-vtysh-config\n!\n");
    let _ = writeln!(s, "router bgp {}", me.asn);
    if let IpAddr::V4(a) = rr {
        let _ = writeln!(s, " bgp router-id {a}");
        let _ = writeln!(s, " bgp cluster-id {a}");
    }
    s.push_str(" bgp log-neighbor-changes\n no bgp default ipv4-unicast\n");
    s.push_str(" neighbor NODES peer-group\n");
    let _ = writeln!(s, " neighbor NODES remote-as {}", f.asn);
    let _ = writeln!(s, " neighbor NODES {TIMERS}");
    let _ = writeln!(s, " neighbor NODES {CONNECT}");
    let mut sorted: Vec<&Node> = nodes.iter().filter(|n| n.cluster == cluster.name).collect();
    sorted.sort_by_key(|n| n.address);
    for n in &sorted {
        let _ = writeln!(s, " neighbor {} peer-group NODES", n.address);
        let _ = writeln!(s, " neighbor {} description node {}", n.address, n.name);
    }
    let mut peers = peers.to_vec();
    peers.sort();
    for p in &peers {
        let _ = writeln!(s, " neighbor {p} remote-as {}", f.asn);
        let _ = writeln!(s, " neighbor {p} description peer");
        let _ = writeln!(s, " neighbor {p} {TIMERS}");
        let _ = writeln!(s, " neighbor {p} {CONNECT}");
    }
    for (afi, v6) in [("ipv4", false), ("ipv6", true)] {
        let _ = writeln!(s, " !\n address-family {afi} unicast");
        // IPv6 routes ride IPv4 sessions too (see the module's note);
        // IPv4 routes only IPv4 ones.
        if sorted.iter().any(|n| v6 || n.address.is_ipv4()) {
            s.push_str("  neighbor NODES activate\n  neighbor NODES route-reflector-client\n  neighbor NODES send-community\n");
        }
        for p in peers.iter().filter(|p| v6 || p.is_ipv4()) {
            let _ = writeln!(s, "  neighbor {p} activate\n  neighbor {p} send-community");
        }
        s.push_str(" exit-address-family\n");
    }
    s.push_str("exit\n!\n");
    Some(s)
}
