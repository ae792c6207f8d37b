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

/// The most /64 subnets an IPv6 network of a pool may span (a /56): each
/// /64 keeps its anycast addresses back (see [`system_holes`]), and every
/// hole is a stored exclusion and a break in the free ranges, so the count
/// stays small. A /48 (65,536 holes pairs) took 28 s to add on SQLite and
/// made every usage report read 131,072 rows; one /64 already holds 2^64
/// VM addresses.
pub const MAX_V6_SUBNETS: u128 = 256;

/// RFC 2526 §2: in a subnet with 64-bit interface identifiers, the highest
/// 128 identifier values with the universal/local bit set to 0 (local) are
/// reserved subnet anycast addresses: `fdff:ffff:ffff:ff80` through
/// `fdff:ffff:ffff:ffff` (anycast IDs 0–127; 126 is Mobile IPv6 home
/// agents).
pub const RFC2526_FIRST_IID: u128 = 0xfdff_ffff_ffff_ff80;
pub const RFC2526_LAST_IID: u128 = 0xfdff_ffff_ffff_ffff;

/// How many /64 subnets `r` touches (IPv6).
fn subnets_64(r: &Range) -> u128 {
    (r.last >> 64) - (r.first >> 64) + 1
}

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

/// Refuse an IPv6 network of a pool that spans more than
/// [`MAX_V6_SUBNETS`] /64 subnets.
pub fn check_pool_block(field: &str, text: &str, r: &Range) -> Result<()> {
    if r.family() == Family::V6 && subnets_64(r) > MAX_V6_SUBNETS {
        return Err(Error::invalid(
            field,
            text,
            format!(
                "an IPv6 network of a pool may span at most {MAX_V6_SUBNETS} /64 subnets (a /56), each of which keeps its anycast addresses back; a /64 holds 2^64 addresses: add a smaller network"
            ),
        ));
    }
    Ok(())
}

/// Addresses of a block that are never handed out, with the reason, before
/// any node or operator exclusion. These follow the seeds:
/// - switching: network address, broadcast address and gateway;
/// - IPv6 networks of a pool (switching and ip-fabric), in every /64 the
///   block touches: the subnet-router anycast address `::` (RFC 4291) and
///   the 128 reserved subnet anycast addresses of RFC 2526
///   (`::fdff:ffff:ffff:ff80` – `::fdff:ffff:ffff:ffff`), plus the gateway;
/// - ip-fabric IPv4 networks and routing subnets and ranges: none ("every
///   address of an additional subnet is usable"; ip-fabric hands out /32s);
/// - a routing node's IPv6 /64: the anycast addresses above and `::1`, which
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
                Family::V6 => anycast_holes(&r, &mut holes),
            }
        }
        (NetworkType::IpFabric, BlockRole::Network, Some(c)) if c.family() == Family::V6 => {
            anycast_holes(&c.range(), &mut holes);
        }
        (_, BlockRole::NodeIpv6, Some(c)) => {
            let r = c.range();
            holes.push((
                Range::single(r.first + 1),
                "the provider's router (::1 by convention)",
            ));
            anycast_holes(&r, &mut holes);
        }
        _ => {}
    }
    holes.sort_by_key(|(r, _)| *r);
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

/// The anycast addresses of every /64 that `r` touches, clipped to `r`, in
/// order. Bounded by [`MAX_V6_SUBNETS`] (checked when the block is parsed;
/// a larger block gets no holes beyond that count rather than exhausting
/// memory).
fn anycast_holes(r: &Range, holes: &mut Vec<(Range, &'static str)>) {
    let first = r.first >> 64;
    let count = subnets_64(r).min(MAX_V6_SUBNETS);
    for i in 0..count {
        let net = (first + i) << 64;
        for (hole, why) in [
            (
                Range::new(net, net),
                "subnet-router anycast address (RFC 4291)",
            ),
            (
                Range::new(net | RFC2526_FIRST_IID, net | RFC2526_LAST_IID),
                "reserved subnet anycast address (RFC 2526)",
            ),
        ] {
            if let Some(h) = hole.intersect(r) {
                holes.push((h, why));
            }
        }
    }
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

    fn texts(h: &[(Range, &str)]) -> Vec<String> {
        h.iter().map(|(r, _)| r.to_string()).collect()
    }

    #[test]
    fn fabric_v6_pool_keeps_every_anycast_address_back() {
        let c: Cidr = "2001:db8:77::/64".parse().unwrap();
        let h = system_holes(NetworkType::IpFabric, BlockRole::Network, Some(c), None);
        assert_eq!(
            texts(&h),
            [
                "2001:db8:77::",
                "2001:db8:77:0:fdff:ffff:ffff:ff80-2001:db8:77:0:fdff:ffff:ffff:ffff"
            ]
        );
        assert_eq!(h[1].0.len(), 128);
        // The highest identifiers are ordinary unicast: RFC 2526 reserves
        // those with the universal/local bit 0, not `ffff:ffff:ffff:ff80`.
        let top: IpAddr = "2001:db8:77:0:ffff:ffff:ffff:ffff".parse().unwrap();
        let ll: IpAddr = "2001:db8:77:0:fdff:ffff:ffff:ff7f".parse().unwrap();
        for ip in [top, ll] {
            assert!(!h.iter().any(|(r, _)| r.contains(key::key(ip))), "{ip}");
        }
    }

    #[test]
    fn every_64_of_a_larger_pool_block_has_its_holes() {
        let c: Cidr = "2001:db8:100::/56".parse().unwrap();
        for t in [NetworkType::IpFabric, NetworkType::Switching] {
            let gw: Option<IpAddr> =
                (t == NetworkType::Switching).then(|| "2001:db8:100::1".parse().unwrap());
            let h = system_holes(t, BlockRole::Network, Some(c), gw);
            let anycast = h.iter().filter(|(_, w)| w.contains("anycast")).count();
            assert_eq!(anycast, 2 * 256, "{t:?}");
            assert!(h.iter().any(|(r, _)| r.to_string() == "2001:db8:100:ff::"));
            assert!(h.iter().any(|(r, _)| r.to_string()
                == "2001:db8:100:ff:fdff:ffff:ffff:ff80-2001:db8:100:ff:fdff:ffff:ffff:ffff"));
        }
    }

    #[test]
    fn blocks_smaller_than_a_64_get_only_what_they_contain() {
        let start: Cidr = "2001:db8:5::/120".parse().unwrap();
        let h = system_holes(NetworkType::IpFabric, BlockRole::Network, Some(start), None);
        assert_eq!(texts(&h), ["2001:db8:5::"]);
        let mid: Cidr = "2001:db8:5::100/120".parse().unwrap();
        let h = system_holes(NetworkType::IpFabric, BlockRole::Network, Some(mid), None);
        assert!(h.is_empty(), "{h:?}");
        let part: Cidr = "2001:db8:5:0:fdff:ffff:ffff:ffc0/122".parse().unwrap();
        let h = system_holes(NetworkType::IpFabric, BlockRole::Network, Some(part), None);
        assert_eq!(
            texts(&h),
            ["2001:db8:5:0:fdff:ffff:ffff:ffc0-2001:db8:5:0:fdff:ffff:ffff:ffff"]
        );
    }

    #[test]
    fn ipv4_rules_are_unchanged() {
        let c: Cidr = "198.51.100.0/24".parse().unwrap();
        assert!(system_holes(NetworkType::IpFabric, BlockRole::Network, Some(c), None).is_empty());
    }

    #[test]
    fn routing_node_ipv6_keeps_its_router_and_anycast_back() {
        let c: Cidr = "2a01:4f8:13b:9a7::/64".parse().unwrap();
        let h = system_holes(NetworkType::Routing, BlockRole::NodeIpv6, Some(c), None);
        assert_eq!(
            texts(&h),
            [
                "2a01:4f8:13b:9a7::",
                "2a01:4f8:13b:9a7::1",
                "2a01:4f8:13b:9a7:fdff:ffff:ffff:ff80-2a01:4f8:13b:9a7:fdff:ffff:ffff:ffff"
            ]
        );
    }

    #[test]
    fn ipv6_pool_networks_wider_than_a_56_are_refused() {
        for bad in ["2001:db8::/55", "2001:db8::/48"] {
            let c: Cidr = bad.parse().unwrap();
            let e = check_pool_block("cidr", bad, &c.range()).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(bad) && text.contains("/56"), "{text}");
        }
        let c: Cidr = "2001:db8::/56".parse().unwrap();
        check_pool_block("cidr", "2001:db8::/56", &c.range()).unwrap();
        // 257 /64s touched by a range that is not a prefix.
        let r = Range::parse("2001:db8::ffff-2001:db8:0:100::").unwrap();
        assert!(check_pool_block("cidr", "…", &r).is_err());
        let v4: Cidr = "10.0.0.0/8".parse().unwrap();
        check_pool_block("cidr", "10.0.0.0/8", &v4.range()).unwrap();
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
