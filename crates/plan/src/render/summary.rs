//! A plan in words, for the operator.

use std::fmt::Write;

use crate::types::{LinkKind, NdpMode, NodePlan};

pub fn summary(plan: &NodePlan) -> String {
    let mut s = format!(
        "node {} of cluster {} ({}), uplink {}",
        plan.node, plan.cluster, plan.network_type, plan.uplink
    );
    if !plan.bridge.is_empty() {
        let _ = write!(s, ", bridge {}", plan.bridge);
    }
    s.push('\n');
    let vms: Vec<_> = plan
        .links
        .iter()
        .filter(|l| l.kind != LinkKind::Bridge)
        .collect();
    let _ = writeln!(
        s,
        "  {} VM interfaces, {} addresses, {} routes (proto {}), {} sysctls, {} neighbour proxies",
        vms.len(),
        plan.addresses.len(),
        plan.routes.len(),
        plan.route_protocol,
        plan.sysctls.len(),
        plan.neighbour_proxies.len()
    );
    for p in &plan.firewall.ports {
        let addrs: Vec<String> = p
            .ipv4
            .iter()
            .map(ToString::to_string)
            .chain(p.ipv6.iter().map(ToString::to_string))
            .collect();
        let _ = writeln!(
            s,
            "  vm {:<20} {:<15} {}  {}",
            p.vm,
            p.ifname,
            p.mac,
            addrs.join(" ")
        );
    }
    for a in &plan.addresses {
        let _ = writeln!(s, "  address {} on {}", a.cidr, a.dev);
    }
    for r in &plan.routes {
        match r.via {
            Some(v) => {
                let _ = writeln!(s, "  route {} via {} dev {}", r.dst, v, r.dev);
            }
            None => {
                let _ = writeln!(s, "  route {} dev {}", r.dst, r.dev);
            }
        }
    }
    for x in &plan.sysctls {
        let _ = writeln!(s, "  sysctl {} = {}", x.key, x.value);
    }
    for n in &plan.neighbour_proxies {
        let _ = writeln!(s, "  neighbour proxy {} on {}", n.address, n.dev);
    }
    let _ = writeln!(
        s,
        "  firewall: anti-spoofing on {} VM interfaces",
        plan.firewall.ports.len()
    );
    if let Some(g) = &plan.firewall.uplink_guard {
        let _ = writeln!(
            s,
            "  uplink guard: frames leaving {} with a source MAC other than {} are dropped and counted",
            g.dev,
            g.mac
                .as_deref()
                .unwrap_or("the uplink's own (read by the agent)")
        );
    }
    if let Some(b) = &plan.bgp {
        let rrs: Vec<String> = b
            .neighbors
            .iter()
            .map(|n| format!("{} (AS {})", n.address, n.asn))
            .collect();
        let _ = writeln!(
            s,
            "  bgp: AS {} router-id {}, announces host routes of {} with community {} to {}",
            b.asn,
            b.router_id,
            b.pool_v4
                .iter()
                .chain(&b.pool_v6)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            b.community,
            rrs.join(", ")
        );
    }
    if let Some(n) = &plan.ndp {
        let _ = writeln!(
            s,
            "  ndp proxy ({}): {} answered on {} for the node and its VMs",
            match n.mode {
                NdpMode::Kernel => "kernel entries",
                NdpMode::Ndppd => "ndppd",
            },
            n.network,
            n.uplink
        );
    }
    s
}
