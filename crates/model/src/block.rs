//! Blocks: the units VM addresses are allocated from. A cluster's networks
//! (switching, ip-fabric) and a routing node's subnets, ranges and IPv6 /64
//! are all blocks; each one has its own allocator.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vmfabric_ipam::{Cidr, Family, Range, key};

use crate::cluster::NetworkType;
use crate::error::{Error, Result};

/// What a block is to its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum BlockRole {
    /// A network of a cluster's pool (switching, ip-fabric).
    Network,
    /// An additional subnet routed to a routing node (all addresses usable).
    NodeSubnet,
    /// An explicit range of a routing node.
    NodeRange,
    /// The provider's IPv6 /64 of a routing node.
    NodeIpv6,
}

impl BlockRole {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockRole::Network => "network",
            BlockRole::NodeSubnet => "node-subnet",
            BlockRole::NodeRange => "node-range",
            BlockRole::NodeIpv6 => "node-ipv6",
        }
    }

    pub fn parse(s: &str) -> Option<BlockRole> {
        [
            BlockRole::Network,
            BlockRole::NodeSubnet,
            BlockRole::NodeRange,
            BlockRole::NodeIpv6,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A stored block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Block {
    #[serde(skip)]
    pub id: i64,
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub node: Option<String>,
    pub role: BlockRole,
    #[serde(with = "crate::serde_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::RangeText))]
    pub range: Range,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_text::opt"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::CidrText>, nullable = false))]
    pub cidr: Option<Cidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::IpAddress>, nullable = false))]
    pub gateway: Option<IpAddr>,
}

impl Block {
    pub fn family(&self) -> Family {
        self.range.family()
    }

    /// `192.0.2.0/27`, or `203.0.113.40-203.0.113.44` for an explicit range.
    pub fn text(&self) -> String {
        match self.cidr {
            Some(c) => c.to_string(),
            None => self.range.to_string(),
        }
    }

    /// How an operator would name the block in a sentence.
    pub fn label(&self) -> String {
        match (&self.node, self.role) {
            (Some(n), BlockRole::NodeIpv6) => format!("IPv6 network {} of node {n}", self.text()),
            (Some(n), _) => format!("range {} of node {n}", self.text()),
            (None, _) => format!("network {} of cluster {}", self.text(), self.cluster),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range.contains(key::key(ip))
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Address space no block may use: it can never hold a host.
const SPECIAL: [(&str, &str); 10] = [
    ("0.0.0.0/8", "\"this network\" (RFC 791)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (RFC 1112) and broadcast"),
    ("::/127", "unspecified and loopback"),
    ("::ffff:0:0/96", "IPv4-mapped"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("::/8", "reserved by the IETF"),
];

/// Refuse blocks that are too large to count or overlap special space.
pub fn check_block_space(field: &str, text: &str, r: &Range) -> Result<()> {
    if r.len() == u128::MAX || (r.family() == Family::V4 && r.len() > 1 << 31) {
        return Err(Error::invalid(
            field,
            text,
            "a block may be at most half of its address family (/1)",
        ));
    }
    for (cidr, what) in SPECIAL {
        let Ok(c) = cidr.parse::<Cidr>() else {
            continue;
        };
        if c.family() == r.family() && c.range().overlaps(r) {
            return Err(Error::invalid(
                field,
                text,
                format!("overlaps {cidr}, which is {what} space and never holds hosts"),
            ));
        }
    }
    Ok(())
}

/// Addresses of a block that are never handed out, with the reason, before
/// any node or operator exclusion. These follow the seeds:
/// - switching: network address, broadcast address and gateway (IPv6: the
///   subnet-router anycast address `::` and the gateway);
/// - ip-fabric networks and routing subnets and ranges: none ("every address
///   of an additional subnet is usable"; ip-fabric hands out /32s);
/// - a routing node's IPv6 /64: `::` (subnet-router anycast) and `::1`, which
///   providers conventionally use for their router on the link.
pub fn system_holes(
    network_type: NetworkType,
    role: BlockRole,
    cidr: Option<Cidr>,
    gateway: Option<IpAddr>,
) -> Vec<(Range, &'static str)> {
    let mut holes = Vec::new();
    match (network_type, role, cidr) {
        (NetworkType::Switching, BlockRole::Network, Some(c)) => {
            let r = c.range();
            match c.family() {
                Family::V4 => {
                    holes.push((Range::single(r.first), "network address"));
                    holes.push((Range::single(r.last), "broadcast address"));
                }
                Family::V6 => holes.push((Range::single(r.first), "subnet-router anycast address")),
            }
        }
        (_, BlockRole::NodeIpv6, Some(c)) => {
            let r = c.range();
            holes.push((Range::single(r.first), "subnet-router anycast address"));
            holes.push((
                Range::single(r.first + 1),
                "the provider's router (::1 by convention)",
            ));
        }
        _ => {}
    }
    if let (Some(gw), Some(c)) = (gateway, cidr)
        && c.contains(gw)
    {
        let k = key::key(gw);
        if !holes.iter().any(|(r, _)| r.contains(k)) {
            holes.push((Range::single(k), "gateway"));
        }
    }
    holes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_v4_holes() {
        let c: Cidr = "192.0.2.0/27".parse().unwrap();
        let gw: IpAddr = "192.0.2.1".parse().unwrap();
        let h = system_holes(
            NetworkType::Switching,
            BlockRole::Network,
            Some(c),
            Some(gw),
        );
        let keys: Vec<String> = h.iter().map(|(r, _)| r.to_string()).collect();
        assert_eq!(keys, ["192.0.2.0", "192.0.2.31", "192.0.2.1"]);
    }

    #[test]
    fn routing_subnet_has_no_holes() {
        let c: Cidr = "203.0.113.40/29".parse().unwrap();
        assert!(
            system_holes(NetworkType::Routing, BlockRole::NodeSubnet, Some(c), None).is_empty()
        );
    }

    #[test]
    fn special_space_is_refused() {
        for bad in [
            "127.0.0.0/24",
            "224.0.0.0/24",
            "fe80::/64",
            "0.0.0.0/0",
            "ff00::/8",
        ] {
            let c: Cidr = bad.parse().unwrap();
            assert!(check_block_space("cidr", bad, &c.range()).is_err(), "{bad}");
        }
        let ok: Cidr = "10.0.0.0/8".parse().unwrap();
        check_block_space("cidr", "10.0.0.0/8", &ok.range()).unwrap();
        let ok6: Cidr = "2001:db8::/48".parse().unwrap();
        check_block_space("cidr", "2001:db8::/48", &ok6.range()).unwrap();
    }
}
