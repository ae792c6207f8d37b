//! The hypervisor's part, played by the lab: a VM is a namespace; its NIC
//! is the veth peer the agent created on the node (`<vm>_g<N>`), moved into
//! the VM and named `eth<N>`, then configured as cloud-init would from the
//! guest configuration vmfabric gives.

use std::net::IpAddr;

use crate::{Lab, Result};

/// One guest address: address, prefix length, gateway.
#[derive(Debug, Clone)]
pub struct GuestAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
}

/// A VM NIC as the guest sees it.
#[derive(Debug, Clone)]
pub struct GuestNic {
    /// The node-side interface (`<vm>_net0`).
    pub host_interface: String,
    /// The node-side name of the peer before it moves (`<vm>_g0`).
    pub peer: String,
    pub mac: String,
    pub index: u8,
    pub addresses: Vec<GuestAddress>,
}

fn contains(a: &GuestAddress, gw: IpAddr) -> bool {
    let bits = |ip: IpAddr| -> (u128, u8) {
        match ip {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
            IpAddr::V6(v) => (u128::from(v), 128),
        }
    };
    let ((x, w), (y, _)) = (bits(a.address), bits(gw));
    if a.address.is_ipv4() != gw.is_ipv4() {
        return false;
    }
    let host = u32::from(w - a.prefix_len.min(w));
    let mask = u128::MAX.checked_shl(host).unwrap_or(0);
    (x & mask) == (y & mask)
}

/// The network of `a` (`192.0.2.37/27` gives `192.0.2.32/27`).
fn network(a: &GuestAddress) -> String {
    match a.address {
        IpAddr::V4(v) => {
            let host = 32 - u32::from(a.prefix_len.min(32));
            let mask = u32::MAX.checked_shl(host).unwrap_or(0);
            format!(
                "{}/{}",
                std::net::Ipv4Addr::from(u32::from(v) & mask),
                a.prefix_len
            )
        }
        IpAddr::V6(v) => {
            let host = 128 - u32::from(a.prefix_len.min(128));
            let mask = u128::MAX.checked_shl(host).unwrap_or(0);
            format!(
                "{}/{}",
                std::net::Ipv6Addr::from(u128::from(v) & mask),
                a.prefix_len
            )
        }
    }
}

/// Move the NIC into VM namespace `vm_ns` (creating it) and configure it.
pub fn attach(lab: &mut Lab, node_ns: &str, vm_short: &str, nic: &GuestNic) -> Result<String> {
    let vm_ns = lab.ns(vm_short);
    if !lab.inventory().0.contains(&vm_ns) {
        lab.add_ns(vm_short)?;
    }
    let eth = format!("eth{}", nic.index);
    lab.ip(node_ns, &["link", "set", &nic.peer, "netns", &vm_ns])?;
    lab.ip(&vm_ns, &["link", "set", &nic.peer, "name", &eth])?;
    // No MAC is set here: the agent gave the peer the VM's MAC when it
    // created the pair, and every lab test with an LXD world relies on it.
    lab.ip(&vm_ns, &["link", "set", &eth, "up"])?;
    // Each NIC also routes in a table of its own, chosen by source address,
    // as the cloud-init config vmfabric renders for several NICs says:
    // replies leave through the NIC their address belongs to. The first
    // NIC's default route is in the main table too.
    let table = (100 + u32::from(nic.index)).to_string();
    let first = nic.index == 0;
    for a in &nic.addresses {
        let cidr = format!("{}/{}", a.address, a.prefix_len);
        let fam = if a.address.is_ipv6() { "-6" } else { "-4" };
        if a.address.is_ipv6() {
            lab.ip(&vm_ns, &["-6", "addr", "add", &cidr, "dev", &eth, "nodad"])?;
        } else {
            lab.ip(&vm_ns, &["addr", "add", &cidr, "dev", &eth])?;
        }
        let host = if a.address.is_ipv6() { 128 } else { 32 };
        let from = format!("{}/{host}", a.address);
        lab.ip(
            &vm_ns,
            &[fam, "rule", "add", "from", &from, "table", &table],
        )?;
        if a.prefix_len < host {
            let net = network(a);
            lab.ip(
                &vm_ns,
                &[fam, "route", "replace", &net, "dev", &eth, "table", &table],
            )?;
        }
        let Some(gw) = a.gateway else { continue };
        let g = gw.to_string();
        // A gateway outside the prefix (or link-local) is on-link.
        let onlink = !contains(a, gw) && !matches!(gw, IpAddr::V6(v) if v.segments()[0] == 0xfe80);
        let default = [fam, "route", "replace", "default", "via", &g, "dev", &eth];
        let to_gw = [fam, "route", "replace", &g, "dev", &eth];
        for in_main in [false, true] {
            if in_main && !first {
                continue;
            }
            let extra: &[&str] = if in_main { &[] } else { &["table", &table] };
            if onlink {
                lab.ip(&vm_ns, &[&to_gw[..], extra].concat())?;
            }
            lab.ip(&vm_ns, &[&default[..], extra].concat())?;
        }
    }
    Ok(vm_ns)
}
