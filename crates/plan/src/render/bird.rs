//! BIRD 2 configuration of a route reflector (a second implementation the
//! operator may run instead of FRR).

use std::fmt::Write;
use std::net::IpAddr;

use vmfabric_model::{Cluster, Node};

/// BIRD names are identifiers: keep letters, digits and `_`.
fn ident(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `bird.conf` for route reflector `rr` of `cluster`, with every node as a
/// client and `peers` (e.g. the data-center core) as non-client peers.
pub fn reflector(
    cluster: &Cluster,
    nodes: &[Node],
    rr: IpAddr,
    peers: &[IpAddr],
) -> Option<String> {
    let f = cluster.fabric.as_ref()?;
    let me = f.route_reflectors.iter().find(|r| r.address == rr)?;
    let router_id = match rr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(_) => "0.0.0.1".into(),
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# route reflector {rr} of cluster {}, written by vmfabric",
        cluster.name
    );
    let _ = writeln!(s, "router id {router_id};\n");
    s.push_str("protocol device { }\n\n");
    // Next hops of reflected routes are the nodes' uplink addresses: BIRD
    // resolves them through the directly connected networks.
    // IPv6 next hops are the nodes' uplink IPv6 addresses (a dual-stack
    // underlay: see the FRR renderer's note), resolved the same way.
    s.push_str("protocol direct {\n");
    if rr.is_ipv4() {
        s.push_str("  ipv4;\n");
    }
    s.push_str("  ipv6;\n}\n\n");
    // IPv4 sessions carry IPv4 and IPv6 routes (multiprotocol BGP); IPv6
    // sessions carry IPv6 routes.
    let channels = |s: &mut String| {
        if rr.is_ipv4() {
            s.push_str("  ipv4 { import all; export all; };\n");
        }
        s.push_str("  ipv6 { import all; export all; };\n");
    };
    let _ = writeln!(
        s,
        "template bgp vmfabric_node {{\n  local {rr} as {};",
        me.asn
    );
    s.push_str("  rr client;\n");
    let _ = writeln!(s, "  rr cluster id {router_id};");
    s.push_str("  hold time 9;\n  keepalive time 3;\n  connect retry time 5;\n");
    channels(&mut s);
    s.push_str("}\n\n");
    let mut sorted: Vec<&Node> = nodes.iter().filter(|n| n.cluster == cluster.name).collect();
    sorted.sort_by_key(|n| n.address);
    for (i, n) in sorted.iter().enumerate() {
        let _ = writeln!(
            s,
            "protocol bgp node{i}_{} from vmfabric_node {{\n  description \"node {}\";\n  neighbor {} as {};\n}}\n",
            ident(&n.name),
            n.name,
            n.address,
            f.asn
        );
    }
    let mut peers = peers.to_vec();
    peers.sort();
    for (i, p) in peers.iter().enumerate() {
        let _ = writeln!(
            s,
            "protocol bgp peer{i} {{\n  description \"peer\";\n  local {rr} as {};\n  neighbor {p} as {};\n  hold time 9;\n  keepalive time 3;\n  connect retry time 5;",
            me.asn, f.asn
        );
        channels(&mut s);
        s.push_str("}\n\n");
    }
    Some(s)
}
