//! Clusters: their network type, the assignment type that follows from it,
//! and the BGP settings of IP-fabric clusters.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vmfabric_ipam::Reuse;

use crate::error::{Error, Result};
use crate::guest::{Dns, parse_mtu};
use crate::names::check_name;
use crate::time::Seconds;

/// The three cluster network types of the seed documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum NetworkType {
    /// Bridged; VMs take addresses from the cluster's pool, on-link.
    Switching,
    /// Hetzner/OVH: per-node additional subnets routed to the node.
    Routing,
    /// L3 fabric: per-VM /32 announced by FRR over iBGP.
    IpFabric,
}

/// Where VM addresses come from, which follows from the network type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Assignment {
    /// A pool shared by the whole cluster.
    ToCluster,
    /// Each node's own ranges.
    ToNode,
}

impl NetworkType {
    pub const ALL: [NetworkType; 3] = [
        NetworkType::Switching,
        NetworkType::Routing,
        NetworkType::IpFabric,
    ];

    pub fn assignment(self) -> Assignment {
        match self {
            NetworkType::Routing => Assignment::ToNode,
            NetworkType::Switching | NetworkType::IpFabric => Assignment::ToCluster,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Switching => "switching",
            NetworkType::Routing => "routing",
            NetworkType::IpFabric => "ip-fabric",
        }
    }
}

impl fmt::Display for NetworkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NetworkType {
    type Err = Error;
    fn from_str(s: &str) -> Result<NetworkType> {
        NetworkType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "type",
                    s,
                    "the type is one of switching, routing, ip-fabric",
                )
            })
    }
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Assignment::ToCluster => "to-cluster",
            Assignment::ToNode => "to-node",
        })
    }
}

/// What runs the VMs, which decides the kind of host interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Virtualization {
    /// KVM: a tap per NIC, opened by the hypervisor.
    #[default]
    Kvm,
    /// LXD containers: a veth pair per NIC.
    Lxd,
}

impl Virtualization {
    pub fn as_str(self) -> &'static str {
        match self {
            Virtualization::Kvm => "kvm",
            Virtualization::Lxd => "lxd",
        }
    }
}

impl fmt::Display for Virtualization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Virtualization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Virtualization> {
        match s {
            "kvm" => Ok(Virtualization::Kvm),
            "lxd" => Ok(Virtualization::Lxd),
            _ => Err(Error::invalid(
                "virtualization",
                s,
                "the virtualization is kvm (a tap per NIC) or lxd (a veth pair per NIC)",
            )),
        }
    }
}

/// A BGP autonomous system number.
pub fn parse_asn(field: &str, text: &str) -> Result<u32> {
    let t = text.trim();
    let rule =
        "an ASN is a whole number from 1 to 4294967294, not 23456 (AS_TRANS) or 65535 (reserved)";
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(field, text, rule));
    }
    match t.parse::<u64>() {
        Ok(n) if (1..=4_294_967_294).contains(&n) && n != 23_456 && n != 65_535 => {
            Ok(u32::try_from(n).map_err(|_| Error::invalid(field, text, rule))?)
        }
        _ => Err(Error::invalid(field, text, rule)),
    }
}

/// A standard BGP community `ASN:VALUE` (RFC 1997), both parts 0..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Community {
    pub asn: u16,
    pub value: u16,
}

impl Community {
    pub fn parse(field: &str, text: &str) -> Result<Community> {
        let rule = "a BGP community is ASN:VALUE with both parts whole numbers from 0 to 65535 (e.g. 65000:100)";
        let bad = || Error::invalid(field, text, rule);
        let (a, v) = text.trim().split_once(':').ok_or_else(bad)?;
        let part = |s: &str| -> Result<u16> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        Ok(Community {
            asn: part(a)?,
            value: part(v)?,
        })
    }
}

impl FromStr for Community {
    type Err = Error;
    fn from_str(s: &str) -> Result<Community> {
        Community::parse("community", s)
    }
}

crate::serde_text::text_serde!(Community);

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.asn, self.value)
    }
}

/// A route reflector the nodes of an IP-fabric cluster peer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteReflector {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub address: IpAddr,
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = u64, minimum = 1, maximum = 4_294_967_294_u32)
    )]
    pub asn: u32,
}

impl RouteReflector {
    /// `IP:ASN`, or `[IPv6]:ASN`.
    pub fn parse(field: &str, text: &str) -> Result<RouteReflector> {
        let rule = "a route reflector is ADDRESS:ASN, e.g. 172.16.0.2:65000 or [2001:db8::2]:65000";
        let t = text.trim();
        let (a, n) = t
            .rsplit_once(':')
            .ok_or_else(|| Error::invalid(field, text, rule))?;
        let a = a
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(a);
        let address: IpAddr = a.parse().map_err(|_| Error::invalid(field, text, rule))?;
        check_unicast(field, address)?;
        let asn = parse_asn(field, n)?;
        Ok(RouteReflector { address, asn })
    }
}

impl fmt::Display for RouteReflector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.asn),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.asn),
        }
    }
}

/// Refuse addresses that can never belong to a host.
pub fn check_unicast(field: &str, ip: IpAddr) -> Result<()> {
    let why = match ip {
        IpAddr::V4(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V4(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(a) if a.is_loopback() => Some("a loopback address"),
        IpAddr::V6(a) if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V6(a) if a.is_multicast() => Some("a multicast address"),
        IpAddr::V6(a) if a.is_loopback() => Some("the loopback address"),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => {
            Some("an IPv4-mapped address (write the IPv4 address itself)")
        }
        _ => None,
    };
    match why {
        Some(w) => Err(Error::invalid(
            field,
            ip,
            format!("must be a unicast host address, not {w}"),
        )),
        None => Ok(()),
    }
}

/// BGP and gateway settings of an IP-fabric cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fabric {
    /// Put on every `<vm>_net0` of every node; the VMs' IPv4 gateway.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Ipv4Address))]
    pub vm_gateway: Ipv4Addr,
    /// The VMs' IPv6 gateway on the same point-to-point links.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Ipv6Address))]
    pub vm_gateway6: Ipv6Addr,
    pub community: Community,
    pub route_reflectors: Vec<RouteReflector>,
    /// The nodes' ASN; iBGP, so equal to every reflector's.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = u64, minimum = 1, maximum = 4_294_967_294_u32)
    )]
    pub asn: u32,
}

/// The IPv6 gateway of IP-fabric VMs unless one is given: link-local, so it
/// is valid on every point-to-point link and never collides with the pool.
pub const DEFAULT_VM_GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// A cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cluster {
    pub name: String,
    #[serde(rename = "type")]
    pub network_type: NetworkType,
    pub assignment: Assignment,
    pub virtualization: Virtualization,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub fabric: Option<Fabric>,
    /// How long a released address waits before automatic reuse.
    pub cooldown: Seconds,
    /// Which free address automatic allocation takes.
    #[serde(with = "reuse_text")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::ReuseOrder))]
    pub reuse: Reuse,
    /// Resolvers and search domains the guests get (routing nodes may
    /// have their own).
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
    /// The MTU of the guests' NICs and of the node's VM interfaces; none:
    /// the defaults (1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, minimum = 1280, maximum = 9216)
    )]
    pub mtu: Option<u16>,
}

/// `Reuse` as its name.
mod reuse_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use vmfabric_ipam::Reuse;

    pub fn serialize<S: Serializer>(r: &Reuse, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Reuse, D::Error> {
        let t = String::deserialize(d)?;
        t.parse()
            .map_err(|()| serde::de::Error::custom(format!("unknown reuse order {t}")))
    }
}

/// `cluster create` as the user typed it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClusterInput {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    )]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = NetworkType))]
    pub network_type: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Ipv4Address>))]
    pub vm_gateway: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Ipv6Address>))]
    pub vm_gateway6: Option<String>,
    #[serde(default)]
    pub bgp_community: Option<String>,
    #[serde(default)]
    pub route_reflectors: Vec<String>,
    #[serde(default)]
    pub asn: Option<String>,
    #[serde(default)]
    pub cooldown: Option<String>,
    #[serde(default)]
    pub reuse: Option<String>,
    #[serde(default)]
    pub virtualization: Option<String>,
    /// Resolvers for the guests (at most 3).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::IpAddress>))]
    pub nameservers: Vec<String>,
    /// Search domains for the guests (at most 6).
    #[serde(default)]
    pub search_domains: Vec<String>,
    /// The guests' MTU, 1280 to 9216.
    #[serde(default)]
    pub mtu: Option<String>,
}

/// A change of a cluster in place: each field given replaces the
/// cluster's; route reflectors are replaced as a list, or added and removed
/// one by one. The name, type and virtualization never change (VMs and
/// plans depend on them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ClusterPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Ipv4Address>))]
    pub vm_gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Ipv6Address>))]
    pub vm_gateway6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bgp_community: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse: Option<String>,
    /// The whole list of route reflectors (ADDRESS:ASN), replacing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_reflectors: Option<Vec<String>>,
    /// Route reflectors to add (ADDRESS:ASN).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_route_reflectors: Vec<String>,
    /// Route reflectors to remove (ADDRESS, or ADDRESS:ASN).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_route_reflectors: Vec<String>,
    /// The whole list of the guests' resolvers, replacing it (empty: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<crate::openapi::IpAddress>>))]
    pub nameservers: Option<Vec<String>>,
    /// The whole list of the guests' search domains, replacing it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search_domains: Option<Vec<String>>,
    /// The guests' MTU, 1280 to 9216, or `auto` for the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<String>,
}

impl ClusterPatch {
    /// The cluster after the change, checked by the rules of creation.
    pub fn apply(&self, c: &Cluster) -> Result<Cluster> {
        if *self == ClusterPatch::default() {
            return Err(Error::invalid(
                "patch",
                "",
                "name at least one setting to change",
            ));
        }
        let mut input = ClusterInput::of(c);
        let set = |field: &mut Option<String>, v: &Option<String>| {
            if v.is_some() {
                field.clone_from(v);
            }
        };
        set(&mut input.vm_gateway, &self.vm_gateway);
        set(&mut input.vm_gateway6, &self.vm_gateway6);
        set(&mut input.bgp_community, &self.bgp_community);
        set(&mut input.asn, &self.asn);
        set(&mut input.cooldown, &self.cooldown);
        set(&mut input.reuse, &self.reuse);
        set(&mut input.mtu, &self.mtu);
        if let Some(all) = &self.nameservers {
            input.nameservers.clone_from(all);
        }
        if let Some(all) = &self.search_domains {
            input.search_domains.clone_from(all);
        }
        if let Some(all) = &self.route_reflectors {
            input.route_reflectors.clone_from(all);
        }
        let current = c
            .fabric
            .as_ref()
            .map(|f| f.route_reflectors.clone())
            .unwrap_or_default();
        for text in &self.remove_route_reflectors {
            let field = "remove-route-reflector";
            let addr = match text.trim().parse::<IpAddr>() {
                Ok(a) => a,
                Err(_) => RouteReflector::parse(field, text)?.address,
            };
            let before = input.route_reflectors.len();
            input
                .route_reflectors
                .retain(|r| RouteReflector::parse(field, r).map_or(true, |r| r.address != addr));
            if input.route_reflectors.len() == before {
                let now: Vec<String> = current.iter().map(ToString::to_string).collect();
                return Err(Error::invalid(
                    field,
                    text,
                    format!(
                        "not a route reflector of cluster {} (it has: {})",
                        c.name,
                        if now.is_empty() {
                            "none".to_string()
                        } else {
                            now.join(", ")
                        }
                    ),
                ));
            }
        }
        for text in &self.add_route_reflectors {
            let rr = RouteReflector::parse("add-route-reflector", text)?;
            if input.route_reflectors.iter().any(|r| {
                RouteReflector::parse("route-reflector", r).is_ok_and(|r| r.address == rr.address)
            }) {
                return Err(Error::invalid(
                    "add-route-reflector",
                    text,
                    format!(
                        "{} is already a route reflector of cluster {}",
                        rr.address, c.name
                    ),
                ));
            }
            input.route_reflectors.push(rr.to_string());
        }
        input.validate()
    }
}

impl ClusterInput {
    /// The input that would create `c` as it is.
    pub fn of(c: &Cluster) -> ClusterInput {
        let f = c.fabric.as_ref();
        ClusterInput {
            name: c.name.clone(),
            network_type: c.network_type.as_str().to_string(),
            vm_gateway: f.map(|f| f.vm_gateway.to_string()),
            vm_gateway6: f.map(|f| f.vm_gateway6.to_string()),
            bgp_community: f.map(|f| f.community.to_string()),
            route_reflectors: f
                .map(|f| f.route_reflectors.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            asn: f.map(|f| f.asn.to_string()),
            cooldown: Some(c.cooldown.to_string()),
            reuse: Some(c.reuse.name().to_string()),
            virtualization: Some(c.virtualization.as_str().to_string()),
            nameservers: c.dns.texts().0,
            search_domains: c.dns.texts().1,
            mtu: c.mtu.map(|m| m.to_string()),
        }
    }
}

impl ClusterInput {
    /// Check every field and build the cluster.
    pub fn validate(&self) -> Result<Cluster> {
        check_name("name", &self.name)?;
        let network_type: NetworkType = self.network_type.parse()?;
        let cooldown = match &self.cooldown {
            Some(c) => Seconds::parse("cooldown", c)?,
            None => Seconds(0),
        };
        let reuse = match &self.reuse {
            Some(r) => r.parse::<Reuse>().map_err(|()| {
                Error::invalid(
                    "reuse",
                    r,
                    "reuse is last (never-used addresses first, then the least recently released) or first-free (lowest free address)",
                )
            })?,
            None => Reuse::Last,
        };
        let fabric = if network_type == NetworkType::IpFabric {
            Some(self.fabric()?)
        } else {
            for (field, given) in [
                ("vm-gateway", self.vm_gateway.as_deref()),
                ("vm-gateway6", self.vm_gateway6.as_deref()),
                ("bgp-community", self.bgp_community.as_deref()),
                (
                    "route-reflector",
                    self.route_reflectors.first().map(String::as_str),
                ),
                ("asn", self.asn.as_deref()),
            ] {
                if let Some(value) = given {
                    return Err(Error::invalid(
                        field,
                        value,
                        format!(
                            "only ip-fabric clusters take --{field}; this cluster is {network_type}"
                        ),
                    ));
                }
            }
            None
        };
        let virtualization = match &self.virtualization {
            Some(v) => v.parse()?,
            None => Virtualization::default(),
        };
        let dns = Dns::parse(&self.nameservers, &self.search_domains)?;
        let mtu = match &self.mtu {
            Some(m) => parse_mtu("mtu", m)?,
            None => None,
        };
        Ok(Cluster {
            name: self.name.clone(),
            network_type,
            assignment: network_type.assignment(),
            virtualization,
            fabric,
            cooldown,
            reuse,
            dns,
            mtu,
        })
    }

    fn fabric(&self) -> Result<Fabric> {
        let need = |field: &str, what: &str| {
            Error::invalid(
                field,
                "",
                format!("an ip-fabric cluster needs {what} (--{field})"),
            )
        };
        let gw = self
            .vm_gateway
            .as_deref()
            .ok_or_else(|| need("vm-gateway", "the VMs' gateway address, e.g. 10.0.0.1"))?;
        let vm_gateway: Ipv4Addr = gw.trim().parse().map_err(|_| {
            Error::invalid(
                "vm-gateway",
                gw,
                "the VM gateway is an IPv4 address not used on any node, e.g. 10.0.0.1",
            )
        })?;
        check_unicast("vm-gateway", IpAddr::V4(vm_gateway))?;
        let vm_gateway6 = match &self.vm_gateway6 {
            Some(g) => {
                let a: Ipv6Addr = g.trim().parse().map_err(|_| {
                    Error::invalid(
                        "vm-gateway6",
                        g,
                        "the IPv6 VM gateway is an IPv6 address, e.g. fe80::1",
                    )
                })?;
                check_unicast("vm-gateway6", IpAddr::V6(a))?;
                a
            }
            None => DEFAULT_VM_GATEWAY6,
        };
        let community = Community::parse(
            "bgp-community",
            self.bgp_community
                .as_deref()
                .ok_or_else(|| need("bgp-community", "a BGP community, e.g. 65000:100"))?,
        )?;
        if self.route_reflectors.is_empty() {
            return Err(need(
                "route-reflector",
                "at least one route reflector ADDRESS:ASN (two are recommended)",
            ));
        }
        let mut route_reflectors: Vec<RouteReflector> = Vec::new();
        for text in &self.route_reflectors {
            let rr = RouteReflector::parse("route-reflector", text)?;
            if rr.address == IpAddr::V4(vm_gateway) || rr.address == IpAddr::V6(vm_gateway6) {
                return Err(Error::invalid(
                    "route-reflector",
                    text,
                    format!(
                        "a route reflector cannot sit on the VM gateway address {}, which every VM's interface carries",
                        rr.address
                    ),
                ));
            }
            if route_reflectors.iter().any(|r| r.address == rr.address) {
                return Err(Error::invalid(
                    "route-reflector",
                    text,
                    "each route reflector address may be given once",
                ));
            }
            route_reflectors.push(rr);
        }
        let asn = match &self.asn {
            Some(a) => parse_asn("asn", a)?,
            None => route_reflectors[0].asn,
        };
        if let Some(rr) = route_reflectors.iter().find(|r| r.asn != asn) {
            return Err(Error::invalid(
                "route-reflector",
                rr,
                format!(
                    "nodes peer with route reflectors over iBGP, so every reflector's ASN must equal the nodes' ASN {asn}"
                ),
            ));
        }
        Ok(Fabric {
            vm_gateway,
            vm_gateway6,
            community,
            route_reflectors,
            asn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fabric_input() -> ClusterInput {
        ClusterInput {
            name: "fab".into(),
            network_type: "ip-fabric".into(),
            vm_gateway: Some("10.0.0.1".into()),
            bgp_community: Some("65000:100".into()),
            route_reflectors: vec!["172.16.0.2:65000".into(), "[2001:db8::2]:65000".into()],
            ..ClusterInput::default()
        }
    }

    #[test]
    fn types_and_assignments() {
        assert_eq!(NetworkType::Routing.assignment(), Assignment::ToNode);
        assert_eq!(NetworkType::Switching.assignment(), Assignment::ToCluster);
        assert_eq!(NetworkType::IpFabric.assignment(), Assignment::ToCluster);
        assert!("bridged".parse::<NetworkType>().is_err());
    }

    #[test]
    fn fabric_cluster_takes_asn_from_reflectors() {
        let c = fabric_input().validate().unwrap();
        let f = c.fabric.unwrap();
        assert_eq!(f.asn, 65000);
        assert_eq!(f.route_reflectors.len(), 2);
        assert_eq!(f.community.to_string(), "65000:100");
    }

    #[test]
    fn bad_bgp_settings() {
        for (field, value) in [
            ("asn", "0"),
            ("asn", "4294967296"),
            ("asn", "-5"),
            ("asn", "23456"),
            ("asn", "65001"),
        ] {
            let mut i = fabric_input();
            i.asn = Some(value.into());
            let e = i.validate().unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { field: f, .. } if f == field || f == "route-reflector"),
                "{value}: {e}"
            );
        }
        for c in ["65000", "65000:", "65536:1", "a:b", "1:2:3", "65000:-1"] {
            let mut i = fabric_input();
            i.bgp_community = Some(c.into());
            assert!(i.validate().is_err(), "{c}");
        }
        for rr in [
            "172.16.0.2",
            "172.16.0.2:0",
            "nope:65000",
            "224.0.0.1:65000",
        ] {
            let mut i = fabric_input();
            i.route_reflectors = vec![rr.into()];
            assert!(i.validate().is_err(), "{rr}");
        }
        let mut i = fabric_input();
        i.route_reflectors.clear();
        assert!(i.validate().is_err());
    }

    #[test]
    fn fabric_flags_refused_elsewhere() {
        let i = ClusterInput {
            name: "sw".into(),
            network_type: "switching".into(),
            vm_gateway: Some("10.0.0.1".into()),
            ..ClusterInput::default()
        };
        let e = i.validate().unwrap_err();
        assert!(e.to_string().contains("only ip-fabric"), "{e}");
    }
}

#[cfg(test)]
mod patch_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fabric() -> Cluster {
        ClusterInput {
            name: "fab".into(),
            network_type: "ip-fabric".into(),
            vm_gateway: Some("10.0.0.1".into()),
            bgp_community: Some("65000:100".into()),
            route_reflectors: vec!["172.16.0.2:65000".into()],
            cooldown: Some("1h".into()),
            reuse: Some("first-free".into()),
            ..ClusterInput::default()
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn a_cluster_is_what_its_own_input_makes() {
        for c in [
            fabric(),
            ClusterInput {
                name: "sw".into(),
                network_type: "switching".into(),
                virtualization: Some("lxd".into()),
                ..ClusterInput::default()
            }
            .validate()
            .unwrap(),
        ] {
            assert_eq!(ClusterInput::of(&c).validate().unwrap(), c);
        }
    }

    #[test]
    fn route_reflectors_are_added_removed_and_replaced() {
        let c = fabric();
        let p = ClusterPatch {
            add_route_reflectors: vec!["172.16.0.3:65000".into()],
            remove_route_reflectors: vec!["172.16.0.2".into()],
            bgp_community: Some("65000:200".into()),
            ..ClusterPatch::default()
        };
        let n = p.apply(&c).unwrap();
        let f = n.fabric.unwrap();
        assert_eq!(f.route_reflectors.len(), 1);
        assert_eq!(f.route_reflectors[0].to_string(), "172.16.0.3:65000");
        assert_eq!(f.community.to_string(), "65000:200");
        assert_eq!(n.cooldown, c.cooldown, "untouched settings stay");
        // Refusals name the field and the value.
        for (p, field) in [
            (ClusterPatch::default(), "patch"),
            (
                ClusterPatch {
                    remove_route_reflectors: vec!["172.16.0.9".into()],
                    ..ClusterPatch::default()
                },
                "remove-route-reflector",
            ),
            (
                ClusterPatch {
                    add_route_reflectors: vec!["172.16.0.2:65000".into()],
                    ..ClusterPatch::default()
                },
                "add-route-reflector",
            ),
            (
                ClusterPatch {
                    route_reflectors: Some(vec!["172.16.0.2:65001".into()]),
                    ..ClusterPatch::default()
                },
                "route-reflector",
            ),
            (
                ClusterPatch {
                    bgp_community: Some("65000".into()),
                    ..ClusterPatch::default()
                },
                "bgp-community",
            ),
            (
                ClusterPatch {
                    reuse: Some("random".into()),
                    ..ClusterPatch::default()
                },
                "reuse",
            ),
        ] {
            match p.apply(&c) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{p:?}"),
                other => panic!("{p:?}: {other:?}"),
            }
        }
        let sw = ClusterInput {
            name: "sw".into(),
            network_type: "switching".into(),
            ..ClusterInput::default()
        }
        .validate()
        .unwrap();
        let p = ClusterPatch {
            bgp_community: Some("65000:1".into()),
            ..ClusterPatch::default()
        };
        assert!(
            matches!(p.apply(&sw), Err(Error::Invalid { field, .. }) if field == "bgp-community")
        );
    }
}
