//! BIRD 2 configuration of a route reflector (a second implementation the
//! operator may run instead of FRR).

use std::fmt::Write;
use std::net::IpAddr;

use vmfabric_model::names::stable_hash;
use vmfabric_model::{Cluster, Node};

/// Longest symbol BIRD takes: 2.0.12 allows 64 characters, versions whose
/// SYM_MAX_LEN counts the terminator 63.
pub const MAX_SYMBOL: usize = 63;

/// BIRD names are identifiers: keep letters, digits and `_`.
fn ident(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A node's protocol name, from its name alone so that it stays when other
/// nodes come and go (a renamed protocol is a new BGP session). A name
/// that is an identifier and fits is kept (`n_NAME`); any other gets a
/// hash of the whole name (`h_PREFIX_HASH`): the two forms cannot meet,
/// and hashed ones differ unless 64-bit hashes collide.
pub fn node_protocol(name: &str) -> String {
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain && name.len() + 2 <= MAX_SYMBOL {
        return format!("n_{name}");
    }
    let hash = stable_hash(&[name.as_bytes()]);
    // 2 + prefix + 1 + 16 characters.
    let prefix: String = ident(name).chars().take(MAX_SYMBOL - 19).collect();
    format!("h_{prefix}_{hash:016x}")
}

/// A non-client peer's protocol name, from its address (stable as above).
fn peer_protocol(p: IpAddr) -> String {
    format!("peer_{}", ident(&p.to_string()))
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
    for n in &sorted {
        let _ = writeln!(
            s,
            "protocol bgp {} from vmfabric_node {{\n  description \"node {}\";\n  neighbor {} as {};\n}}\n",
            node_protocol(&n.name),
            n.name,
            n.address,
            f.asn
        );
    }
    let mut peers = peers.to_vec();
    peers.sort();
    for p in &peers {
        let _ = writeln!(
            s,
            "protocol bgp {} {{\n  description \"peer\";\n  local {rr} as {};\n  neighbor {p} as {};\n  hold time 9;\n  keepalive time 3;\n  connect retry time 5;",
            peer_protocol(*p),
            me.asn,
            f.asn
        );
        channels(&mut s);
        s.push_str("}\n\n");
    }
    Some(s)
}
