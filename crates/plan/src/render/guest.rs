//! What the guest needs: its network configuration (cloud-init
//! network-config v2, i.e. netplan). The hypervisors' files are in
//! `libvirt.rs` (KVM) and `lxd.rs` (LXD).

use std::fmt::Write;
use std::net::IpAddr;

use vmfabric_ipam::Cidr;
use vmfabric_model::{GuestNetwork, NicAddress, Vm};

/// Whether `gw` is on the link of `a` (inside its prefix) or needs an
/// on-link route: /32 and /128 addresses, and link-local gateways.
fn needs_onlink(a: &NicAddress, gw: IpAddr) -> bool {
    let inside = Cidr::new(a.address, a.prefix_len)
        .ok()
        .or_else(|| Some(Cidr::containing(a.address, a.prefix_len)))
        .is_some_and(|c| c.contains(gw));
    !inside || matches!(gw, IpAddr::V6(g) if g.is_unicast_link_local())
}

/// The routing table of NIC `index` in a VM with several (netplan `table:`).
fn nic_table(index: u8) -> u32 {
    100 + u32::from(index)
}

/// cloud-init network-config v2 for `vm`; each NIC is matched by its MAC
/// and named `eth<N>`.
///
/// Written for every renderer cloud-init has (netplan, networkd, eni,
/// sysconfig), which keep different parts of v2: cloud-init 22.4 (Debian
/// 12) passes the document to netplan as it is, but for the others keeps
/// of a route only `to`, `via` and `metric` (never `on-link`, `scope` or
/// `table`), writes `::/0` as `::/64` for networkd, and crashes in eni on
/// a route without `via`. So:
/// - the default route of each family is `gateway4`/`gateway6`, which every
///   renderer keeps as the interface's gateway (eni's ifupdown adds it
///   `onlink`); netplan calls them deprecated but accepts them;
/// - a gateway outside the address's prefix (a /32 or /128 guest) gets a
///   host route with an unspecified `via` (`0.0.0.0`, `::`), a direct
///   route for netplan (with `scope: link`) and networkd, which installs it
///   before the default route needs it; eni writes it as a `route add`
///   that may fail harmlessly (`|| true`): its gateway is on-link anyway.
///
/// One default route per family in the main table, on the first NIC with
/// a gateway of that family (several addresses on one NIC share it). With
/// several NICs, each NIC also has a table of its own (its default route
/// and networks), chosen by source address: replies leave through the NIC
/// their address belongs to, as the node's anti-spoofing rules expect
/// (they accept a NIC's addresses only from that NIC), even where two NICs
/// share a network and the main table would pick the other one. Tables
/// and rules are netplan's alone: other renderers drop them.
///
/// The DNS of `net` goes on the first NIC with addresses (one resolver list
/// per guest, which every renderer writes for its interface); its MTU on
/// every NIC. Both take effect when cloud-init applies the network config,
/// i.e. on a guest's first boot: a change in place reaches a running guest
/// only when its cloud-init runs again (new instance id or `cloud-init
/// clean`).
///
/// The document has netplan's top-level `network:` key: netplan needs it
/// when the file is used as it is, and cloud-init (NoCloud network-config)
/// takes the document with or without it (it strips the key).
pub fn cloud_init(vm: &Vm, net: &GuestNetwork) -> String {
    let mut s = format!(
        "# network-config of VM {}, written by vmfabric\nnetwork:\n  version: 2\n  ethernets:\n",
        vm.name
    );
    let multi = vm.nics.iter().filter(|n| !n.addresses.is_empty()).count() > 1;
    let mut main_default = [false; 2];
    let mut dns_written = net.dns.is_empty();
    for nic in &vm.nics {
        let _ = writeln!(
            s,
            "    eth{}:\n      match:\n        macaddress: \"{}\"\n      set-name: eth{}",
            nic.index, nic.mac, nic.index
        );
        if let Some(mtu) = net.mtu {
            let _ = writeln!(s, "      mtu: {mtu}");
        }
        if nic.addresses.is_empty() {
            s.push_str("      dhcp4: false\n      dhcp6: false\n");
            continue;
        }
        s.push_str("      addresses:\n");
        for a in &nic.addresses {
            let _ = writeln!(s, "        - {}/{}", a.address, a.prefix_len);
        }
        // The first address of each family with a gateway names the route.
        let mut gateways: Vec<(&NicAddress, IpAddr)> = Vec::new();
        for a in &nic.addresses {
            if let Some(g) = a.gateway
                && !gateways.iter().any(|(_, h)| h.is_ipv4() == g.is_ipv4())
            {
                gateways.push((a, g));
            }
        }
        let mut routes = String::new();
        let mut policy = String::new();
        let table = nic_table(nic.index);
        for &(a, g) in &gateways {
            let family = usize::from(g.is_ipv6());
            let onlink = needs_onlink(a, g);
            // The main table's default route (and the host route to its
            // gateway) is the first NIC's: a second host route to the same
            // gateway on another NIC would collide with it.
            let main = !main_default[family];
            if main {
                main_default[family] = true;
                let key = if g.is_ipv4() { "gateway4" } else { "gateway6" };
                let _ = writeln!(s, "      {key}: {g}");
            }
            if main && onlink && !matches!(g, IpAddr::V6(v) if v.is_unicast_link_local()) {
                let (host, any) = if g.is_ipv4() {
                    (32, "0.0.0.0")
                } else {
                    (128, "\"::\"")
                };
                let _ = write!(
                    routes,
                    "        - to: {g}/{host}\n          via: {any}\n          scope: link\n"
                );
            }
            if !multi {
                continue;
            }
            let to = if g.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            let on = if onlink {
                "          on-link: true\n"
            } else {
                ""
            };
            let _ = write!(
                routes,
                "        - to: {to}\n          via: {g}\n{on}          table: {table}\n"
            );
            for b in nic
                .addresses
                .iter()
                .filter(|b| b.address.is_ipv4() == g.is_ipv4())
            {
                let host = if b.address.is_ipv4() { 32 } else { 128 };
                let _ = writeln!(
                    policy,
                    "        - from: {}/{host}\n          table: {table}",
                    b.address
                );
                // The NIC's own network is on-link in its table too.
                if b.prefix_len < host {
                    let net = Cidr::containing(b.address, b.prefix_len);
                    let _ = writeln!(
                        routes,
                        "        - to: {net}\n          scope: link\n          table: {table}"
                    );
                }
            }
        }
        if !routes.is_empty() {
            s.push_str("      routes:\n");
            s.push_str(&routes);
        }
        if !policy.is_empty() {
            s.push_str("      routing-policy:\n");
            s.push_str(&policy);
        }
        if !dns_written {
            dns_written = true;
            s.push_str("      nameservers:\n");
            if !net.dns.nameservers.is_empty() {
                s.push_str("        addresses:\n");
                for n in &net.dns.nameservers {
                    let _ = writeln!(s, "          - \"{n}\"");
                }
            }
            if !net.dns.search.is_empty() {
                s.push_str("        search:\n");
                for d in &net.dns.search {
                    let _ = writeln!(s, "          - \"{d}\"");
                }
            }
        }
        s.push_str("      accept-ra: false\n");
    }
    s
}
