//! Building a node's plan from what the store knows, per network type.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vmfabric_ipam::Cidr;
use vmfabric_model::cluster::Virtualization;
use vmfabric_model::node::NdpProxy;
use vmfabric_model::{Block, Cluster, Mac, NetworkType, Node, Vm};

use crate::types::{
    Address, Bgp, Firewall, Link, LinkKind, Ndp, NdpMode, Neighbor, NeighbourProxy, NodePlan, Port,
    ROUTE_PROTOCOL, Route, Sysctl, UplinkGuard,
};

/// Everything a node's plan depends on.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlanInput {
    pub cluster: Cluster,
    pub node: Node,
    /// The cluster's pool networks (switching, ip-fabric).
    pub networks: Vec<Block>,
    /// The VMs on this node.
    pub vms: Vec<Vm>,
}

/// The MTU of a VM's interface when its cluster names none (Ethernet's).
pub const DEFAULT_MTU: u16 = 1500;

/// The MAC of a VM NIC's host side (see `Mac::host_side`).
pub fn host_mac(guest: &Mac) -> String {
    guest.host_side().to_string()
}

/// The node-side name of a veth peer before the hypervisor moves it into
/// the container (where it becomes `eth<N>`): `<vm>_net<N>` → `<vm>_g<N>`,
/// never longer than the host interface's name.
pub fn guest_peer(host_interface: &str) -> String {
    match host_interface.rsplit_once("_net") {
        Some((prefix, n)) => format!("{prefix}_g{n}"),
        None => format!("{host_interface}g"),
    }
}

fn cidr(ip: IpAddr, len: u8) -> String {
    format!("{ip}/{len}")
}

fn host_cidr(ip: IpAddr) -> String {
    let len = if ip.is_ipv4() { 32 } else { 128 };
    cidr(ip, len)
}

fn sysctl(key: impl Into<String>, value: &str) -> Sysctl {
    Sysctl {
        key: key.into(),
        value: value.to_string(),
    }
}

fn route(dst: String, dev: &str, via: Option<IpAddr>) -> Route {
    Route {
        dst,
        dev: dev.to_string(),
        via,
    }
}

/// Build the plan. Pure and deterministic: every list is sorted, so the
/// order in which VMs or networks were created never shows.
pub fn build(input: &PlanInput) -> NodePlan {
    let c = &input.cluster;
    let node = &input.node;
    let uplink = node.uplink.to_string();
    let bridge = node.bridge.to_string();
    let routed_links = c.network_type == NetworkType::IpFabric;
    let mut plan = NodePlan {
        node: node.name.clone(),
        cluster: c.name.clone(),
        network_type: c.network_type.to_string(),
        route_protocol: ROUTE_PROTOCOL,
        uplink: uplink.clone(),
        bridge: if routed_links {
            String::new()
        } else {
            bridge.clone()
        },
        links: Vec::new(),
        addresses: Vec::new(),
        routes: Vec::new(),
        sysctls: Vec::new(),
        neighbour_proxies: Vec::new(),
        firewall: Firewall::default(),
        bgp: None,
        ndp: None,
    };

    // Per-VM host interfaces and what each VM may send.
    for vm in &input.vms {
        for nic in &vm.nics {
            let name = nic.host_interface.to_string();
            let (kind, peer, peer_mac) = match c.virtualization {
                Virtualization::Kvm => (LinkKind::Tap, None, None),
                Virtualization::Lxd => (
                    LinkKind::Veth,
                    Some(guest_peer(&name)),
                    Some(nic.mac.to_string()),
                ),
            };
            plan.links.push(Link {
                name: name.clone(),
                kind,
                master: (!routed_links).then(|| bridge.clone()),
                mac: Some(host_mac(&nic.mac)),
                mac_from_uplink: false,
                peer,
                peer_mac,
                vm: Some(vm.name.clone()),
                mtu: Some(c.mtu.unwrap_or(DEFAULT_MTU)),
            });
            let mut port = Port {
                ifname: name,
                vm: vm.name.clone(),
                mac: nic.mac.to_string(),
                ipv4: Vec::new(),
                ipv6: Vec::new(),
                bridged: !routed_links,
            };
            for a in &nic.addresses {
                match a.address {
                    IpAddr::V4(v4) => port.ipv4.push(v4),
                    IpAddr::V6(v6) => port.ipv6.push(v6),
                }
            }
            port.ipv4.sort();
            port.ipv6.sort();
            plan.firewall.ports.push(port);
        }
    }

    match c.network_type {
        NetworkType::Switching => switching(input, &mut plan),
        NetworkType::Routing => routing(input, &mut plan),
        NetworkType::IpFabric => fabric(input, &mut plan),
    }

    plan.links.sort();
    plan.links.dedup();
    plan.addresses.sort();
    plan.addresses.dedup();
    plan.routes.sort();
    plan.routes.dedup();
    plan.sysctls.sort();
    plan.sysctls.dedup();
    plan.neighbour_proxies.sort();
    plan.neighbour_proxies.dedup();
    plan.firewall.ports.sort();
    plan
}

/// Switching: the uplink is a port of the bridge, the node's address is on
/// the bridge, VM interfaces are bridge ports; VMs are on-link.
fn switching(input: &PlanInput, plan: &mut NodePlan) {
    let node = &input.node;
    plan.links.push(Link {
        name: plan.bridge.clone(),
        kind: LinkKind::Bridge,
        master: None,
        mac: None,
        mac_from_uplink: true,
        peer: None,
        peer_mac: None,
        vm: None,
        mtu: None,
    });
    // The node's address keeps the prefix of the network it lies in.
    let len = node.address_prefix.unwrap_or_else(|| {
        input
            .networks
            .iter()
            .find(|b| b.contains(node.address))
            .and_then(|b| b.cidr)
            .map_or(if node.address.is_ipv4() { 32 } else { 128 }, |c| {
                c.prefix_len()
            })
    });
    plan.addresses.push(Address {
        dev: plan.bridge.clone(),
        cidr: cidr(node.address, len),
    });
}

/// Routing (Hetzner/OVH): the uplink keeps the primary IP and the default
/// route; the bridge holds the primary IP as /32 and each VM address is
/// routed to it; the node forwards. Nothing but the node's MAC may leave
/// the uplink.
fn routing(input: &PlanInput, plan: &mut NodePlan) {
    let node = &input.node;
    let Some(r) = &node.routing else {
        return;
    };
    let uplink = plan.uplink.clone();
    let bridge = plan.bridge.clone();
    plan.links.push(Link {
        name: bridge.clone(),
        kind: LinkKind::Bridge,
        master: None,
        mac: None,
        mac_from_uplink: false,
        peer: None,
        peer_mac: None,
        vm: None,
        mtu: None,
    });
    plan.addresses.push(Address {
        dev: bridge.clone(),
        cidr: host_cidr(r.primary_ip),
    });
    plan.sysctls.push(sysctl("net.ipv4.ip_forward", "1"));
    // The node's own on-link network: a VM holding a single address from
    // it is answered for by proxy ARP on the uplink.
    let onlink = node
        .address_prefix
        .or(r.primary_prefix)
        .map(|len| Cidr::containing(r.primary_ip, len));
    let mut proxy_arp = false;
    let six = r.ipv6.as_ref();
    let mut vm_v6_onlink: BTreeSet<Ipv6Addr> = BTreeSet::new();
    for port in &plan.firewall.ports {
        for a in &port.ipv4 {
            plan.routes
                .push(route(host_cidr(IpAddr::V4(*a)), &bridge, None));
            if onlink.is_some_and(|n| n.contains(IpAddr::V4(*a))) {
                proxy_arp = true;
            }
        }
        for a in &port.ipv6 {
            match six {
                // Addresses of the node's /64 are on-link on the bridge.
                Some(s) if s.network.contains(IpAddr::V6(*a)) => {
                    vm_v6_onlink.insert(*a);
                }
                _ => plan
                    .routes
                    .push(route(host_cidr(IpAddr::V6(*a)), &bridge, None)),
            }
        }
    }
    if proxy_arp {
        plan.sysctls
            .push(sysctl(format!("net.ipv4.conf.{uplink}.proxy_arp"), "1"));
    }
    plan.firewall.uplink_guard = Some(UplinkGuard {
        dev: uplink.clone(),
        mac: node.uplink_mac.map(|m| m.to_string()),
    });
    let Some(s) = six else {
        return;
    };
    plan.sysctls
        .push(sysctl("net.ipv6.conf.all.forwarding", "1"));
    plan.addresses.push(Address {
        dev: bridge.clone(),
        cidr: cidr(IpAddr::V6(s.address), 64),
    });
    plan.routes
        .push(route("::/0".into(), &uplink, Some(IpAddr::V6(s.gateway))));
    if r.ndp_proxy == NdpProxy::Off {
        return;
    }
    // The provider's /64 is on-link: its router (::1) stays reachable
    // through the uplink, and the node answers neighbour discovery for
    // itself and its VMs there (LAB.md, "IPv6 on an on-link provider /64").
    let first = match s.network.addr() {
        IpAddr::V6(a) => u128::from(a),
        IpAddr::V4(_) => 0,
    };
    let router = Ipv6Addr::from(first + 1);
    plan.routes
        .push(route(host_cidr(IpAddr::V6(router)), &uplink, None));
    let mode = match r.ndp_proxy {
        NdpProxy::Ndppd => NdpMode::Ndppd,
        _ => NdpMode::Kernel,
    };
    if mode == NdpMode::Kernel {
        plan.sysctls
            .push(sysctl(format!("net.ipv6.conf.{uplink}.proxy_ndp"), "1"));
        plan.sysctls
            .push(sysctl(format!("net.ipv6.conf.{bridge}.proxy_ndp"), "1"));
        plan.neighbour_proxies.push(NeighbourProxy {
            dev: uplink.clone(),
            address: IpAddr::V6(s.address),
        });
        for a in &vm_v6_onlink {
            plan.neighbour_proxies.push(NeighbourProxy {
                dev: uplink.clone(),
                address: IpAddr::V6(*a),
            });
        }
        plan.neighbour_proxies.push(NeighbourProxy {
            dev: bridge.clone(),
            address: IpAddr::V6(router),
        });
    }
    plan.ndp = Some(Ndp {
        mode,
        uplink,
        bridge,
        network: s.network.to_string(),
        node_address: s.address,
        router,
    });
}

/// IP-fabric: each `<vm>_net0` carries the VM gateway and the VM's host
/// routes; FRR announces them to the route reflectors.
fn fabric(input: &PlanInput, plan: &mut NodePlan) {
    let c = &input.cluster;
    let Some(f) = &c.fabric else {
        return;
    };
    plan.sysctls.push(sysctl("net.ipv4.ip_forward", "1"));
    let gw6 = if f.vm_gateway6.is_unicast_link_local() {
        cidr(IpAddr::V6(f.vm_gateway6), 64)
    } else {
        host_cidr(IpAddr::V6(f.vm_gateway6))
    };
    let mut any_v6 = false;
    for port in &plan.firewall.ports {
        plan.addresses.push(Address {
            dev: port.ifname.clone(),
            cidr: host_cidr(IpAddr::V4(f.vm_gateway)),
        });
        for a in &port.ipv4 {
            plan.routes
                .push(route(host_cidr(IpAddr::V4(*a)), &port.ifname, None));
        }
        if !port.ipv6.is_empty() {
            any_v6 = true;
            plan.addresses.push(Address {
                dev: port.ifname.clone(),
                cidr: gw6.clone(),
            });
        }
        for a in &port.ipv6 {
            plan.routes
                .push(route(host_cidr(IpAddr::V6(*a)), &port.ifname, None));
        }
    }
    let pool = |v6: bool| -> Vec<String> {
        let mut v: Vec<String> = input
            .networks
            .iter()
            .filter(|b| b.family().bits() == if v6 { 128 } else { 32 })
            .map(|b| b.text())
            .collect();
        v.sort();
        v
    };
    let pool_v6 = pool(true);
    if any_v6 || !pool_v6.is_empty() {
        plan.sysctls
            .push(sysctl("net.ipv6.conf.all.forwarding", "1"));
    }
    let router_id = match input.node.address {
        IpAddr::V4(a) => a,
        // A router-id is 32 bits; derive one that is stable per node.
        IpAddr::V6(a) => Ipv4Addr::from(u32::try_from(u128::from(a) & 0xffff_ffff).unwrap_or(0)),
    };
    let mut neighbors: Vec<Neighbor> = f
        .route_reflectors
        .iter()
        .map(|r| Neighbor {
            address: r.address,
            asn: r.asn,
        })
        .collect();
    neighbors.sort();
    plan.bgp = Some(Bgp {
        hostname: input.node.name.clone(),
        asn: f.asn,
        router_id,
        community: f.community.to_string(),
        neighbors,
        pool_v4: pool(false),
        pool_v6,
    });
}
