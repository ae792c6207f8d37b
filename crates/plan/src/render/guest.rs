//! What the guest needs: its network configuration (cloud-init
//! network-config v2, i.e. netplan) and, for KVM, the libvirt
//! `<interface>` elements that attach it to the taps vmfabric manages.

use std::fmt::Write;
use std::net::IpAddr;

use vmfabric_ipam::Cidr;
use vmfabric_model::{NicAddress, Vm};

/// Whether `gw` is on the link of `a` (inside its prefix) or needs an
/// on-link route: /32 and /128 addresses, and link-local gateways.
fn needs_onlink(a: &NicAddress, gw: IpAddr) -> bool {
    let inside = Cidr::new(a.address, a.prefix_len)
        .ok()
        .or_else(|| Some(Cidr::containing(a.address, a.prefix_len)))
        .is_some_and(|c| c.contains(gw));
    !inside || matches!(gw, IpAddr::V6(g) if g.is_unicast_link_local())
}

/// cloud-init network-config v2 for `vm`; each NIC is matched by its MAC
/// and named `eth<N>`.
pub fn cloud_init(vm: &Vm) -> String {
    let mut s = format!(
        "# network-config of VM {}, written by vmfabric\nversion: 2\nethernets:\n",
        vm.name
    );
    for nic in &vm.nics {
        let _ = writeln!(
            s,
            "  eth{}:\n    match:\n      macaddress: \"{}\"\n    set-name: eth{}",
            nic.index, nic.mac, nic.index
        );
        if nic.addresses.is_empty() {
            s.push_str("    dhcp4: false\n    dhcp6: false\n");
            continue;
        }
        s.push_str("    addresses:\n");
        for a in &nic.addresses {
            let _ = writeln!(s, "      - {}/{}", a.address, a.prefix_len);
        }
        let routes: Vec<(&NicAddress, IpAddr)> = nic
            .addresses
            .iter()
            .filter_map(|a| a.gateway.map(|g| (a, g)))
            .collect();
        if !routes.is_empty() {
            s.push_str("    routes:\n");
        }
        for (a, g) in routes {
            let to = if g.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
            let _ = writeln!(s, "      - to: {to}\n        via: {g}");
            if needs_onlink(a, g) {
                s.push_str("        on-link: true\n");
            }
        }
        s.push_str("    accept-ra: false\n");
    }
    s
}

/// libvirt `<interface>` elements for a KVM VM: an existing tap
/// (`managed='no'`), the guest MAC, virtio.
pub fn libvirt(vm: &Vm) -> String {
    let mut s = format!(
        "<!-- interfaces of VM {}, written by vmfabric -->\n",
        vm.name
    );
    for nic in &vm.nics {
        let _ = writeln!(
            s,
            "<interface type='ethernet'>\n  <mac address='{}'/>\n  <target dev='{}' managed='no'/>\n  <model type='virtio'/>\n</interface>",
            nic.mac, nic.host_interface
        );
    }
    s
}
