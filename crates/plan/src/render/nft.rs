//! The nftables ruleset vmfabric owns on a node: one table per family, each
//! replaced atomically (`nft -f` runs the whole file as one transaction;
//! creating then deleting the table first makes it work whether or not the
//! table exists). Nothing outside these tables is touched.
//!
//! - `bridge vmfabric`: VMs on bridge ports (switching, routing) may send
//!   only from their own MAC and addresses; DHCP requests, IPv6 DAD and
//!   link-local neighbour discovery pass; router advertisements from VMs
//!   are dropped.
//! - `inet vmfabric` and `arp vmfabric`: the same for routed VM links
//!   (ip-fabric).
//! - `netdev vmfabric`: the uplink MAC guard of routing nodes: every frame
//!   leaving the uplink whose source MAC is not the node's is counted and
//!   dropped, so the provider never sees a foreign MAC.
//!
//! Every drop has a counter, so the agent can report what it caught.

use std::fmt::Write;

use crate::types::{NFT_TABLE, NodePlan, Port};

fn elements<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        return String::new();
    }
    let v: Vec<String> = items.iter().map(f).collect();
    format!("\n\t\telements = {{ {} }}", v.join(",\n\t\t\t     "))
}

/// Sets of the ports: names, (name, MAC), (name, IPv4), (name, IPv6).
fn sets(s: &mut String, ports: &[&Port]) {
    let names: Vec<&str> = ports.iter().map(|p| p.ifname.as_str()).collect();
    let macs: Vec<(&str, &str)> = ports
        .iter()
        .map(|p| (p.ifname.as_str(), p.mac.as_str()))
        .collect();
    let v4: Vec<(&str, String)> = ports
        .iter()
        .flat_map(|p| {
            p.ipv4
                .iter()
                .map(move |a| (p.ifname.as_str(), a.to_string()))
        })
        .collect();
    let v6: Vec<(&str, String)> = ports
        .iter()
        .flat_map(|p| {
            p.ipv6
                .iter()
                .map(move |a| (p.ifname.as_str(), a.to_string()))
        })
        .collect();
    let _ = writeln!(
        s,
        "\tset ports {{\n\t\ttype ifname{}\n\t}}",
        elements(&names, |n| format!("\"{n}\""))
    );
    let _ = writeln!(
        s,
        "\tset macs {{\n\t\ttype ifname . ether_addr{}\n\t}}",
        elements(&macs, |(n, m)| format!("\"{n}\" . {m}"))
    );
    let _ = writeln!(
        s,
        "\tset ipv4 {{\n\t\ttype ifname . ipv4_addr{}\n\t}}",
        elements(&v4, |(n, a)| format!("\"{n}\" . {a}"))
    );
    let _ = writeln!(
        s,
        "\tset ipv6 {{\n\t\ttype ifname . ipv6_addr{}\n\t}}",
        elements(&v6, |(n, a)| format!("\"{n}\" . {a}"))
    );
}

fn replace(s: &mut String, family: &str) {
    // Create-then-delete makes the replacement work on a fresh node too.
    let _ = writeln!(
        s,
        "table {family} {NFT_TABLE} {{}}\ndelete table {family} {NFT_TABLE}"
    );
}

/// The whole ruleset for `plan`. `uplink_mac` is the uplink's MAC when the
/// plan does not know it (the agent reads it from the kernel); without a
/// MAC the guard table is left out.
pub fn ruleset(plan: &NodePlan, uplink_mac: Option<&str>) -> String {
    let mut s = format!(
        "#!/usr/sbin/nft -f\n# nftables of node {}, written by vmfabric: only the tables named {NFT_TABLE} are vmfabric's\n\n",
        plan.node
    );
    let bridged: Vec<&Port> = plan.firewall.ports.iter().filter(|p| p.bridged).collect();
    let routed: Vec<&Port> = plan.firewall.ports.iter().filter(|p| !p.bridged).collect();
    if plan.network_type != "ip-fabric" {
        replace(&mut s, "bridge");
        let _ = writeln!(s, "table bridge {NFT_TABLE} {{");
        sets(&mut s, &bridged);
        s.push_str(concat!(
            "\tchain vm_ingress {\n",
            "\t\ttype filter hook prerouting priority -200; policy accept;\n",
            "\t\tiifname != @ports accept\n",
            "\t\tether type != { arp, ip, ip6 } counter drop comment \"only ARP, IPv4, IPv6 from VMs\"\n",
            "\t\tiifname . ether saddr != @macs counter drop comment \"foreign source MAC\"\n",
            "\t\tether type arp iifname . arp saddr ip != @ipv4 counter drop comment \"ARP for a foreign address\"\n",
            "\t\tether type arp iifname . arp saddr ether != @macs counter drop comment \"ARP with a foreign MAC\"\n",
            "\t\tip saddr 0.0.0.0 udp sport 68 udp dport 67 accept comment \"DHCP\"\n",
            "\t\tether type ip iifname . ip saddr != @ipv4 counter drop comment \"foreign IPv4 source\"\n",
            "\t\ticmpv6 type nd-router-advert counter drop comment \"VMs are not routers\"\n",
            "\t\tip6 saddr :: icmpv6 type nd-neighbor-solicit accept comment \"duplicate address detection\"\n",
            "\t\tip6 saddr fe80::/10 meta l4proto ipv6-icmp accept comment \"neighbour discovery\"\n",
            "\t\tether type ip6 iifname . ip6 saddr != @ipv6 counter drop comment \"foreign IPv6 source\"\n",
            "\t}\n}\n\n"
        ));
    } else {
        replace(&mut s, "inet");
        let _ = writeln!(s, "table inet {NFT_TABLE} {{");
        sets(&mut s, &routed);
        s.push_str(concat!(
            "\tchain vm_ingress {\n",
            "\t\ttype filter hook prerouting priority raw; policy accept;\n",
            "\t\tiifname != @ports accept\n",
            "\t\tiifname . ether saddr != @macs counter drop comment \"foreign source MAC\"\n",
            "\t\tmeta nfproto ipv4 iifname . ip saddr != @ipv4 counter drop comment \"foreign IPv4 source\"\n",
            "\t\ticmpv6 type nd-router-advert counter drop comment \"VMs are not routers\"\n",
            "\t\tip6 saddr :: icmpv6 type nd-neighbor-solicit accept comment \"duplicate address detection\"\n",
            "\t\tip6 saddr fe80::/10 meta l4proto ipv6-icmp accept comment \"neighbour discovery\"\n",
            "\t\tmeta nfproto ipv6 iifname . ip6 saddr != @ipv6 counter drop comment \"foreign IPv6 source\"\n",
            "\t}\n}\n\n"
        ));
        replace(&mut s, "arp");
        let _ = writeln!(s, "table arp {NFT_TABLE} {{");
        sets(&mut s, &routed);
        s.push_str(concat!(
            "\tchain vm_arp {\n",
            "\t\ttype filter hook input priority 0; policy accept;\n",
            "\t\tiifname != @ports accept\n",
            "\t\tiifname . arp saddr ip != @ipv4 counter drop comment \"ARP for a foreign address\"\n",
            "\t}\n}\n\n"
        ));
    }
    if let Some(g) = &plan.firewall.uplink_guard {
        let mac = g.mac.as_deref().or(uplink_mac);
        match mac {
            Some(mac) => {
                replace(&mut s, "netdev");
                let _ = writeln!(
                    s,
                    "table netdev {NFT_TABLE} {{\n\tchain uplink_guard {{\n\t\ttype filter hook egress device \"{}\" priority 0; policy accept;\n\t\tether saddr != {mac} counter drop comment \"only the node's MAC leaves the uplink\"\n\t}}\n}}",
                    g.dev
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "# uplink MAC guard on {}: the agent adds it with the MAC it reads from the kernel",
                    g.dev
                );
            }
        }
    }
    s
}
