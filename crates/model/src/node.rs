//! Nodes: hypervisor hosts of a cluster. Routing nodes also carry their
//! primary IP, their additional subnets or ranges, and their IPv6 /64.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vmfabric_ipam::{Cidr, Family, Range, key};

use crate::block::{BlockRole, check_block_space};
use crate::cluster::{Cluster, NetworkType, check_unicast};
use crate::error::{Error, Result};
use crate::guest::Dns;
use crate::names::{IfName, Mac, check_name};
use crate::network::{parse_cidr, parse_ip};

/// How a routing node answers neighbour discovery for its VMs' IPv6
/// addresses when the provider's /64 is on-link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum NdpProxy {
    /// Kernel proxy entries (`ip -6 neigh add proxy`), managed by vmfabric.
    #[default]
    Kernel,
    /// ndppd with a rendered `/etc/ndppd.conf`, as in the seed.
    Ndppd,
    /// The provider routes the /64 to the node: nothing to proxy.
    Off,
}

impl NdpProxy {
    pub fn as_str(self) -> &'static str {
        match self {
            NdpProxy::Kernel => "kernel",
            NdpProxy::Ndppd => "ndppd",
            NdpProxy::Off => "off",
        }
    }
}

impl FromStr for NdpProxy {
    type Err = Error;
    fn from_str(s: &str) -> Result<NdpProxy> {
        [NdpProxy::Kernel, NdpProxy::Ndppd, NdpProxy::Off]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                Error::invalid("ndp-proxy", s, "the NDP proxy mode is kernel, ndppd or off")
            })
    }
}

impl fmt::Display for NdpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A routing node's IPv6: its address in the provider's /64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeIpv6 {
    /// The node's own address, `::2` by convention.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Ipv6Address))]
    pub address: Ipv6Addr,
    /// The provider's /64.
    #[serde(with = "crate::serde_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::CidrText))]
    pub network: Cidr,
    /// The provider's router, usually `fe80::1`.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Ipv6Address))]
    pub gateway: Ipv6Addr,
}

/// What only routing nodes have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoutingNode {
    /// On the uplink; the VMs' gateway.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub primary_ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub primary_prefix: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub ipv6: Option<NodeIpv6>,
    pub ndp_proxy: NdpProxy,
    /// The resolvers of the node's data centre, replacing the cluster's
    /// for its VMs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub dns: Option<Dns>,
}

/// A node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub name: String,
    pub cluster: String,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub address: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub address_prefix: Option<u8>,
    pub uplink: IfName,
    /// The uplink's MAC, when the operator gave it; otherwise the agent
    /// reads it from the node's kernel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub uplink_mac: Option<Mac>,
    pub bridge: IfName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub routing: Option<RoutingNode>,
}

impl Node {
    /// Addresses of the node itself, which no VM may get.
    pub fn own_addresses(&self) -> Vec<IpAddr> {
        let mut v = vec![self.address];
        if let Some(r) = &self.routing {
            if r.primary_ip != self.address {
                v.push(r.primary_ip);
            }
            if let Some(six) = &r.ipv6 {
                v.push(IpAddr::V6(six.address));
            }
        }
        v
    }
}

/// A block a routing node brings along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBlock {
    pub role: BlockRole,
    pub range: Range,
    pub cidr: Option<Cidr>,
}

/// `node add` as the user typed it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    )]
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub uplink: Option<String>,
    #[serde(default)]
    pub uplink_mac: Option<String>,
    #[serde(default)]
    pub bridge: Option<String>,
    #[serde(default)]
    pub primary_ip: Option<String>,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub ranges: Vec<String>,
    #[serde(default)]
    pub ipv6: Option<String>,
    #[serde(default)]
    pub ipv6_gateway: Option<String>,
    #[serde(default)]
    pub ndp_proxy: Option<String>,
    /// Routing: the VMs' resolvers, replacing the cluster's (at most 3).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::IpAddress>))]
    pub nameservers: Vec<String>,
    /// Routing: the VMs' search domains, replacing the cluster's.
    #[serde(default)]
    pub search_domains: Vec<String>,
}

impl NodeInput {
    /// The input that would create `node` as it is (without its blocks):
    /// a change in place is validated as if the node were added with it,
    /// so the rules of creation and change cannot drift apart.
    pub fn of(node: &Node) -> NodeInput {
        let with_prefix = |ip: IpAddr, p: Option<u8>| match p {
            Some(p) => format!("{ip}/{p}"),
            None => ip.to_string(),
        };
        let r = node.routing.as_ref();
        let six = r.and_then(|r| r.ipv6.as_ref());
        let dns = r.and_then(|r| r.dns.as_ref());
        NodeInput {
            name: node.name.clone(),
            address: with_prefix(node.address, node.address_prefix),
            uplink: Some(node.uplink.to_string()),
            uplink_mac: node.uplink_mac.map(|m| m.to_string()),
            bridge: Some(node.bridge.to_string()),
            primary_ip: r.map(|r| with_prefix(r.primary_ip, r.primary_prefix)),
            subnets: Vec::new(),
            ranges: Vec::new(),
            ipv6: six.map(|s| format!("{}/{}", s.address, s.network.prefix_len())),
            ipv6_gateway: six.map(|s| s.gateway.to_string()),
            ndp_proxy: r.map(|r| r.ndp_proxy.as_str().to_string()),
            nameservers: dns.map(|d| d.texts().0).unwrap_or_default(),
            search_domains: dns.map(|d| d.texts().1).unwrap_or_default(),
        }
    }
}

/// A change of a node's interfaces in place: each field given replaces
/// the node's (NDP proxy mode: routing nodes only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct NodePatch {
    /// The node's own address (`ADDRESS` or `ADDRESS/PREFIX`); in routing,
    /// the primary IP follows it unless it was set apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Routing: the primary IP on the uplink, the VMs' IPv4 gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink_mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ndp_proxy: Option<String>,
    /// Routing: the VMs' resolvers, replacing the node's list (empty: the
    /// cluster's again).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<crate::openapi::IpAddress>>))]
    pub nameservers: Option<Vec<String>>,
    /// Routing: the VMs' search domains, replacing the node's list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_domains: Option<Vec<String>>,
}

impl NodePatch {
    /// The node after the change, checked by the rules of creation.
    pub fn apply(&self, node: &Node, cluster: &Cluster, blocks: &[crate::Block]) -> Result<Node> {
        if *self == NodePatch::default() {
            return Err(Error::invalid(
                "patch",
                "",
                "name at least one setting to change",
            ));
        }
        let mut input = NodeInput::of(node);
        if let Some(a) = &self.address {
            // A primary IP that was the address follows it.
            if node
                .routing
                .as_ref()
                .is_some_and(|r| r.primary_ip == node.address)
            {
                input.primary_ip = None;
            }
            input.address.clone_from(a);
        }
        for (field, v) in [
            (&mut input.primary_ip, &self.primary_ip),
            (&mut input.uplink, &self.uplink),
            (&mut input.uplink_mac, &self.uplink_mac),
            (&mut input.bridge, &self.bridge),
            (&mut input.ndp_proxy, &self.ndp_proxy),
        ] {
            if v.is_some() {
                field.clone_from(v);
            }
        }
        if let Some(all) = &self.nameservers {
            input.nameservers.clone_from(all);
        }
        if let Some(all) = &self.search_domains {
            input.search_domains.clone_from(all);
        }
        // The node's blocks as they are: validated together, unchanged.
        for b in blocks {
            match b.role {
                BlockRole::NodeSubnet => input.subnets.push(b.text()),
                BlockRole::NodeRange => input.ranges.push(b.text()),
                _ => {}
            }
        }
        Ok(input.validate(cluster)?.0)
    }
}

/// The uplink name used when none is given (the seed's example).
pub const DEFAULT_UPLINK: &str = "eno1";
/// The bridge name used when none is given (the seed's name).
pub const DEFAULT_BRIDGE: &str = "vmbr0";

/// `ADDRESS` or `ADDRESS/PREFIX` (the prefix of the network it sits in).
pub fn parse_ip_prefix(field: &str, text: &str) -> Result<(IpAddr, Option<u8>)> {
    match text.split_once('/') {
        None => Ok((parse_ip(field, text)?, None)),
        Some((a, l)) => {
            // The whole text in the error: the user typed ADDRESS/PREFIX.
            let ip: IpAddr = a.trim().parse().map_err(|_| {
                Error::invalid(field, text, "must be an IPv4 or IPv6 address with /PREFIX")
            })?;
            check_unicast(field, ip)?;
            let bits = Family::of(ip).bits();
            let len: u8 = l
                .parse()
                .ok()
                .filter(|n| *n <= bits && l.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    Error::invalid(
                        field,
                        text,
                        format!("the prefix length must be a number from 0 to {bits}"),
                    )
                })?;
            Ok((ip, Some(len)))
        }
    }
}

impl NodeInput {
    /// Check the node against the rules of `cluster`'s type.
    pub fn validate(&self, cluster: &Cluster) -> Result<(Node, Vec<NodeBlock>)> {
        check_name("name", &self.name)?;
        let (address, address_prefix) = parse_ip_prefix("address", &self.address)?;
        let uplink = IfName::new("uplink", self.uplink.as_deref().unwrap_or(DEFAULT_UPLINK))?;
        let bridge = IfName::new("bridge", self.bridge.as_deref().unwrap_or(DEFAULT_BRIDGE))?;
        for (field, name) in [("uplink", &uplink), ("bridge", &bridge)] {
            // lo exists in every namespace; all and default name the
            // kernel's per-protocol settings (/proc/sys/net/*/conf/).
            if matches!(name.as_str(), "lo" | "all" | "default") {
                return Err(Error::invalid(
                    field,
                    name,
                    "lo, all and default are reserved by the kernel; name the node's real interface",
                ));
            }
            // Refused whether or not such a VM exists yet: a VM created
            // later would otherwise take the node's interface.
            if crate::names::is_vm_interface(name.as_str()) {
                return Err(Error::invalid(
                    field,
                    name,
                    "names ending in _net<N> or _g<N> are a VM's interfaces on the node; name the node's real interface",
                ));
            }
        }
        if uplink == bridge {
            return Err(Error::invalid(
                "bridge",
                &bridge,
                "the bridge and the uplink must be different interfaces",
            ));
        }
        let uplink_mac = match &self.uplink_mac {
            Some(text) => {
                let m: Mac = text.trim().parse().map_err(|_| {
                    Error::invalid(
                        "uplink-mac",
                        text,
                        "a MAC is six hex octets separated by colons",
                    )
                })?;
                if !m.is_unicast() || m.0 == [0; 6] {
                    return Err(Error::invalid(
                        "uplink-mac",
                        text,
                        "the uplink's MAC is a unicast address (first octet even, not all zero)",
                    ));
                }
                Some(m)
            }
            None => None,
        };
        let mut node = Node {
            name: self.name.clone(),
            cluster: cluster.name.clone(),
            address,
            address_prefix,
            uplink,
            uplink_mac,
            bridge,
            routing: None,
        };
        if cluster.network_type != NetworkType::Routing {
            for (field, given) in [
                ("primary-ip", self.primary_ip.as_deref()),
                ("subnet", self.subnets.first().map(String::as_str)),
                ("range", self.ranges.first().map(String::as_str)),
                ("ipv6", self.ipv6.as_deref()),
                ("ipv6-gateway", self.ipv6_gateway.as_deref()),
                ("ndp-proxy", self.ndp_proxy.as_deref()),
                ("nameserver", self.nameservers.first().map(String::as_str)),
                (
                    "search-domain",
                    self.search_domains.first().map(String::as_str),
                ),
            ] {
                if let Some(value) = given {
                    // VMs of the other types move between nodes: their
                    // DNS is the cluster's.
                    let instead = if field == "nameserver" || field == "search-domain" {
                        "whose guests get their DNS from the cluster (`cluster set --nameservers`)"
                    } else {
                        "and takes VM addresses from its networks (`network add`)"
                    };
                    return Err(Error::invalid(
                        field,
                        value,
                        format!(
                            "only nodes of routing clusters take --{field}; cluster {} is {} {instead}",
                            cluster.name, cluster.network_type
                        ),
                    ));
                }
            }
            return Ok((node, Vec::new()));
        }
        let (primary_ip, primary_prefix) = match &self.primary_ip {
            Some(p) => parse_ip_prefix("primary-ip", p)?,
            None => (address, address_prefix),
        };
        if Family::of(primary_ip) != Family::V4 {
            return Err(Error::invalid(
                "primary-ip",
                primary_ip,
                "the primary IP is the node's IPv4 address on the uplink (IPv6 goes in --ipv6)",
            ));
        }
        let mut blocks: Vec<NodeBlock> = Vec::new();
        for text in &self.subnets {
            let c = parse_cidr("subnet", text)?;
            blocks.push(NodeBlock {
                role: BlockRole::NodeSubnet,
                range: c.range(),
                cidr: Some(c),
            });
        }
        for text in &self.ranges {
            let r = Range::parse(text).map_err(|e| Error::invalid("range", text, e))?;
            check_block_space("range", text, &r)?;
            blocks.push(NodeBlock {
                role: BlockRole::NodeRange,
                range: r,
                cidr: None,
            });
        }
        let ipv6 = match &self.ipv6 {
            Some(text) => Some(self.ipv6(text)?),
            None => {
                if let Some(g) = &self.ipv6_gateway {
                    return Err(Error::invalid(
                        "ipv6-gateway",
                        g,
                        "an IPv6 gateway needs the node's IPv6 address (--ipv6 ADDR/64)",
                    ));
                }
                None
            }
        };
        // A routing VM's IPv6 gateway is its node's IPv6 address: without
        // one, VMs would get IPv6 addresses and no route.
        if ipv6.is_none()
            && let Some(b) = blocks
                .iter()
                .find(|b| key::family(b.range.first) == Family::V6)
        {
            return Err(Error::invalid(
                b.role_field(),
                b.text(),
                "VMs of a routing node use the node's IPv6 address as their IPv6 gateway, so an IPv6 subnet or range needs --ipv6 ADDR/64 too",
            ));
        }
        if let Some(six) = &ipv6 {
            blocks.push(NodeBlock {
                role: BlockRole::NodeIpv6,
                range: six.network.range(),
                cidr: Some(six.network),
            });
        }
        if blocks.is_empty() {
            return Err(Error::invalid(
                "subnet",
                "",
                "a routing node needs the range of addresses for its VMs: at least one --subnet CIDR, --range A-B or --ipv6 ADDR/64",
            ));
        }
        for (i, a) in blocks.iter().enumerate() {
            if let Some(b) = blocks[..i].iter().find(|b| b.range.overlaps(&a.range)) {
                return Err(Error::invalid(
                    a.role_field(),
                    a.text(),
                    format!("overlaps {} given for the same node", b.text()),
                ));
            }
        }
        let ndp_proxy = match &self.ndp_proxy {
            Some(p) => p.parse()?,
            None => NdpProxy::default(),
        };
        let dns = Dns::parse(&self.nameservers, &self.search_domains)?;
        node.routing = Some(RoutingNode {
            primary_ip,
            primary_prefix,
            ipv6,
            ndp_proxy,
            dns: (!dns.is_empty()).then_some(dns),
        });
        Ok((node, blocks))
    }

    fn ipv6(&self, text: &str) -> Result<NodeIpv6> {
        let rule = "the node's IPv6 address is given with prefix length 64, inside the provider's /64 (::2 by convention, e.g. 2a01:4f8:13b:9a7::2/64)";
        // An IPv4 address here is the wrong family, whatever its prefix.
        let addr_part = text.split_once('/').map_or(text, |(a, _)| a);
        if addr_part.trim().parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(Error::invalid("ipv6", text, rule));
        }
        let (ip, len) = parse_ip_prefix("ipv6", text)?;
        let IpAddr::V6(address) = ip else {
            return Err(Error::invalid("ipv6", text, rule));
        };
        if len != Some(64) {
            return Err(Error::invalid("ipv6", text, rule));
        }
        let network = Cidr::containing(ip, 64);
        check_block_space("ipv6", text, &network.range())?;
        if key::key(ip) <= network.range().first + 1 {
            return Err(Error::invalid(
                "ipv6",
                text,
                "::0 is the subnet-router anycast address and ::1 the provider's router; use ::2 by convention",
            ));
        }
        let gateway = match &self.ipv6_gateway {
            Some(g) => {
                let gw = parse_ip("ipv6-gateway", g)?;
                match gw {
                    IpAddr::V6(a) => a,
                    IpAddr::V4(_) => {
                        return Err(Error::invalid(
                            "ipv6-gateway",
                            g,
                            "the IPv6 gateway is an IPv6 address, usually fe80::1",
                        ));
                    }
                }
            }
            None => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        };
        check_unicast("ipv6-gateway", IpAddr::V6(gateway))?;
        if gateway == address {
            return Err(Error::invalid(
                "ipv6-gateway",
                gateway,
                "the IPv6 gateway is the provider's router, not the node's own address",
            ));
        }
        Ok(NodeIpv6 {
            address,
            network,
            gateway,
        })
    }
}

impl NodeBlock {
    pub fn text(&self) -> String {
        match self.cidr {
            Some(c) => c.to_string(),
            None => self.range.to_string(),
        }
    }

    fn role_field(&self) -> &'static str {
        match self.role {
            BlockRole::NodeRange => "range",
            BlockRole::NodeIpv6 => "ipv6",
            _ => "subnet",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterInput;

    fn routing() -> Cluster {
        ClusterInput {
            name: "hetzner".into(),
            network_type: "routing".into(),
            ..ClusterInput::default()
        }
        .validate()
        .unwrap()
    }

    fn seed_node() -> NodeInput {
        NodeInput {
            name: "node1".into(),
            address: "123.45.12.48".into(),
            subnets: vec!["203.0.113.40/29".into()],
            ..NodeInput::default()
        }
    }

    #[test]
    fn seed_routing_node() {
        let (n, blocks) = seed_node().validate(&routing()).unwrap();
        let r = n.routing.unwrap();
        assert_eq!(r.primary_ip.to_string(), "123.45.12.48");
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].range.len(), 8);
        assert_eq!(n.bridge.as_str(), "vmbr0");
    }

    #[test]
    fn ipv6_must_be_inside_a_64() {
        let mut i = seed_node();
        i.ipv6 = Some("2a01:4f8:13b:9a7::2/64".into());
        let (n, blocks) = i.validate(&routing()).unwrap();
        let six = n.routing.unwrap().ipv6.unwrap();
        assert_eq!(six.network.to_string(), "2a01:4f8:13b:9a7::/64");
        assert_eq!(blocks.len(), 2);
        for bad in [
            "2a01:4f8:13b:9a7::2",
            "2a01:4f8:13b:9a7::2/56",
            "2a01:4f8:13b:9a7::2/128",
            "2a01:4f8:13b:9a7::/64",
            "192.0.2.1/64",
            "fe80::2/64",
        ] {
            i.ipv6 = Some(bad.into());
            assert!(i.validate(&routing()).is_err(), "{bad}");
        }
    }

    #[test]
    fn routing_node_needs_a_range() {
        let mut i = seed_node();
        i.subnets.clear();
        assert!(i.validate(&routing()).is_err());
        i.ranges = vec!["203.0.113.40-203.0.113.44".into(), "203.0.113.44".into()];
        let e = i.validate(&routing()).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
    }

    #[test]
    fn routing_flags_refused_elsewhere() {
        let sw = ClusterInput {
            name: "sw".into(),
            network_type: "switching".into(),
            ..ClusterInput::default()
        }
        .validate()
        .unwrap();
        assert!(seed_node().validate(&sw).is_err());
    }

    #[test]
    fn interface_names_checked() {
        let mut i = seed_node();
        i.uplink = Some("this-name-is-too-long".into());
        assert!(i.validate(&routing()).is_err());
        i.uplink = Some("vmbr0".into());
        assert!(i.validate(&routing()).is_err());
    }
}
