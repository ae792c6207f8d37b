//! The NodePlan: everything a node's kernel and daemons must look like for
//! its VMs, as plain data. Sorted everywhere, so the same input gives the
//! same plan byte for byte, and two plans can be compared item by item.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Route protocol number that marks routes vmfabric owns (`ip route ...
/// proto 177`). Not used by the kernel, iproute2 or FRR (FRR uses 186–198).
pub const ROUTE_PROTOCOL: u8 = 177;

/// Names of the nftables tables vmfabric owns; nothing else is touched.
pub const NFT_TABLE: &str = "vmfabric";

/// What kind of host interface a VM's NIC has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    Bridge,
    /// KVM: a tap the hypervisor opens (libvirt `type='ethernet'`, `managed='no'`).
    Tap,
    /// LXD: a veth pair whose peer goes into the container.
    Veth,
}

/// An interface vmfabric creates and owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Link {
    pub name: String,
    pub kind: LinkKind,
    /// The bridge this interface is a port of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The MAC vmfabric sets on the host side, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The bridge takes the uplink's MAC (switching: the node keeps one MAC
    /// towards the network whether the uplink is bridged or not).
    #[serde(default, skip_serializing_if = "is_false")]
    pub mac_from_uplink: bool,
    /// The veth peer's name on the node (the hypervisor moves it into the
    /// container as `eth<N>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The MAC the agent gives the veth peer: the VM's own, so that the
    /// anti-spoofing rules (keyed on it) never depend on the hypervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_mac: Option<String>,
    /// The VM this interface belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// The MTU the agent keeps on the link: a VM's interface carries the
    /// frames its guest was told it may send (the cluster's MTU, 1500 by
    /// default). None: whatever the link has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An address on an interface (`CIDR` text: `10.0.0.1/32`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address {
    pub dev: String,
    pub cidr: String,
}

/// A route vmfabric owns (always with [`ROUTE_PROTOCOL`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Route {
    /// Destination in CIDR text; `0.0.0.0/0` or `::/0` for default routes.
    pub dst: String,
    pub dev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
}

/// A sysctl under /proc/sys, by its dotted name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
}

/// A kernel neighbour proxy entry (`ip -6 neigh add proxy ADDR dev DEV`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NeighbourProxy {
    pub dev: String,
    pub address: IpAddr,
}

/// One VM interface as the firewall sees it: what it may send.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Port {
    pub ifname: String,
    pub vm: String,
    /// The guest's MAC: the only source MAC the VM may use.
    pub mac: String,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// Port of a bridge (switching, routing) or a routed link (ip-fabric).
    pub bridged: bool,
}

/// The nftables state vmfabric owns on a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firewall {
    pub ports: Vec<Port>,
    /// Routing nodes: drop and count every frame leaving the uplink whose
    /// source MAC is not the node's, so no VM can get the server locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_guard: Option<UplinkGuard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UplinkGuard {
    pub dev: String,
    /// The uplink's own MAC; when unknown, the agent reads it from the
    /// kernel before rendering the ruleset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// BGP of an IP-fabric node (rendered as FRR's frr.conf).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bgp {
    pub hostname: String,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// `ASN:VALUE` set on every VM route.
    pub community: String,
    pub neighbors: Vec<Neighbor>,
    /// The cluster's IPv4 pool: only host routes inside it are announced.
    pub pool_v4: Vec<String>,
    pub pool_v6: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Neighbor {
    pub address: IpAddr,
    pub asn: u32,
}

/// How a routing node answers neighbour discovery for its VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NdpMode {
    Kernel,
    Ndppd,
}

/// NDP proxying of a routing node's on-link /64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ndp {
    pub mode: NdpMode,
    pub uplink: String,
    pub bridge: String,
    /// The provider's /64.
    pub network: String,
    /// The node's own address in it (`::2`).
    pub node_address: Ipv6Addr,
    /// The provider's on-link router in the /64 (`::1`), reached through
    /// the uplink and answered for on the bridge.
    pub router: Ipv6Addr,
}

/// The complete desired network state of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    pub node: String,
    pub cluster: String,
    #[serde(rename = "type")]
    pub network_type: String,
    pub route_protocol: u8,
    pub uplink: String,
    pub bridge: String,
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub sysctls: Vec<Sysctl>,
    pub neighbour_proxies: Vec<NeighbourProxy>,
    pub firewall: Firewall,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<Bgp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ndp: Option<Ndp>,
}
