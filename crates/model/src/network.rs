//! Networks: blocks of a physical network that form a cluster's pool.

use std::net::IpAddr;

use vmfabric_ipam::{Cidr, Family, Range, key};

use crate::block::{check_block_space, check_pool_block};
use crate::cluster::{Cluster, NetworkType, check_unicast};
use crate::error::{Error, Result};

/// `network add` as the user typed it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NetworkInput {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::CidrText))]
    pub cidr: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::IpAddress>))]
    pub gateway: Option<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A change of a network in place: its gateway, and operator exclusions
/// added or removed (`A-B` or one address).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct NetworkPatch {
    /// Shrink the network in place to this CIDR inside it; refused while
    /// an address outside it is held. A change of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::CidrText>))]
    pub shrink_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::IpAddress>))]
    pub gateway: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_exclusions: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_exclusions: Vec<String>,
}

/// Addresses one `network set` may exclude or give back: each is one row
/// operation, so a change stays one short transaction.
pub const MAX_EXCLUSION_CHANGE: u128 = 65_536;

/// A checked network, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub cidr: Cidr,
    pub gateway: Option<IpAddr>,
    /// Operator exclusions, inside the network.
    pub exclusions: Vec<Range>,
}

/// Parse a block in CIDR notation, with an error that says what was meant.
pub fn parse_cidr(field: &str, text: &str) -> Result<Cidr> {
    let c: Cidr = text
        .parse()
        .map_err(|e: vmfabric_ipam::ParseError| Error::invalid(field, text, e))?;
    check_block_space(field, text, &c.range())?;
    Ok(c)
}

/// Parse an address.
pub fn parse_ip(field: &str, text: &str) -> Result<IpAddr> {
    let ip: IpAddr = text
        .trim()
        .parse()
        .map_err(|_| Error::invalid(field, text, "must be an IPv4 or IPv6 address"))?;
    check_unicast(field, ip)?;
    Ok(ip)
}

/// Parse an exclusion `A` or `A-B` that must lie inside `within`.
pub fn parse_range_within(field: &str, text: &str, within: &Range, what: &str) -> Result<Range> {
    let r = Range::parse(text).map_err(|e| Error::invalid(field, text, e))?;
    if !within.covers(&r) {
        return Err(Error::invalid(
            field,
            text,
            format!("must lie inside {what}"),
        ));
    }
    Ok(r)
}

impl NetworkInput {
    /// Check the network against the rules of `cluster`'s type.
    pub fn validate(&self, cluster: &Cluster) -> Result<NetworkSpec> {
        if cluster.network_type == NetworkType::Routing {
            return Err(Error::invalid(
                "cluster",
                &cluster.name,
                "routing clusters assign addresses to nodes, not to the cluster: give each node its additional subnets with `node add ... --subnet CIDR` or `--range A-B`",
            ));
        }
        let cidr = parse_cidr("cidr", &self.cidr)?;
        check_pool_block("cidr", &self.cidr, &cidr.range())?;
        let r = cidr.range();
        let gateway = match cluster.network_type {
            NetworkType::Switching => Some(self.switching_gateway(cidr)?),
            _ => {
                if let Some(g) = &self.gateway {
                    return Err(Error::invalid(
                        "gateway",
                        g,
                        "ip-fabric VMs use the cluster's VM gateway (--vm-gateway of the cluster), so a network has no gateway of its own",
                    ));
                }
                None
            }
        };
        let mut exclusions = Vec::new();
        for x in &self.exclude {
            exclusions.push(parse_range_within(
                "exclude",
                x,
                &r,
                &format!("the network {cidr}"),
            )?);
        }
        Ok(NetworkSpec {
            cidr,
            gateway,
            exclusions,
        })
    }

    fn switching_gateway(&self, cidr: Cidr) -> Result<IpAddr> {
        let r = cidr.range();
        let min_len = match cidr.family() {
            Family::V4 => 30,
            Family::V6 => 126,
        };
        if cidr.prefix_len() > min_len {
            return Err(Error::invalid(
                "cidr",
                cidr,
                format!(
                    "a switching network is on-link: it needs a network address, a gateway and room for VMs, so its prefix must be /{min_len} or shorter"
                ),
            ));
        }
        let gw = match &self.gateway {
            Some(text) => parse_ip("gateway", text)?,
            // The first host address: what routers in hosting racks use.
            None => key::addr(r.first + 1),
        };
        let k = key::key(gw);
        if !cidr.contains(gw) {
            return Err(Error::invalid(
                "gateway",
                gw,
                format!("the gateway must lie inside the network {cidr}"),
            ));
        }
        if k == r.first || (cidr.family() == Family::V4 && k == r.last) {
            return Err(Error::invalid(
                "gateway",
                gw,
                format!("the gateway cannot be the network or broadcast address of {cidr}"),
            ));
        }
        Ok(gw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterInput;

    fn cluster(t: &str) -> Cluster {
        let mut i = ClusterInput {
            name: "c".into(),
            network_type: t.into(),
            ..ClusterInput::default()
        };
        if t == "ip-fabric" {
            i.vm_gateway = Some("10.0.0.1".into());
            i.bgp_community = Some("65000:100".into());
            i.route_reflectors = vec!["172.16.0.2:65000".into()];
        }
        i.validate().unwrap()
    }

    fn input(cidr: &str) -> NetworkInput {
        NetworkInput {
            cidr: cidr.into(),
            ..NetworkInput::default()
        }
    }

    #[test]
    fn switching_defaults_gateway_to_first_host() {
        let s = input("192.0.2.0/27")
            .validate(&cluster("switching"))
            .unwrap();
        assert_eq!(s.gateway, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn bad_networks() {
        let sw = cluster("switching");
        let cases = [
            ("192.0.2.1/27", None, "host bits"),
            ("192.0.2.0/33", None, "prefix length"),
            ("not-a-cidr", None, "CIDR"),
            ("192.0.2.0/31", None, "on-link"),
            ("192.0.2.0/27", Some("192.0.2.40"), "inside the network"),
            ("192.0.2.0/27", Some("192.0.2.31"), "broadcast"),
            ("192.0.2.0/27", Some("2001:db8::1"), "inside the network"),
        ];
        for (cidr, gw, rule) in cases {
            let mut i = input(cidr);
            i.gateway = gw.map(String::from);
            let e = i.validate(&sw).unwrap_err();
            assert!(e.to_string().contains(rule), "{cidr} {gw:?}: {e}");
        }
        let mut i = input("192.0.2.0/27");
        i.exclude = vec!["192.0.2.30-192.0.2.40".into()];
        assert!(i.validate(&sw).unwrap_err().to_string().contains("inside"));
        assert!(
            input("198.51.100.0/24")
                .validate(&cluster("routing"))
                .is_err()
        );
        let mut i = input("198.51.100.0/24");
        i.gateway = Some("198.51.100.1".into());
        assert!(i.validate(&cluster("ip-fabric")).is_err());
        let e = input("2001:db8::/48")
            .validate(&cluster("ip-fabric"))
            .unwrap_err();
        assert!(e.to_string().contains("at most 256 /64"), "{e}");
    }

    #[test]
    fn fabric_accepts_any_prefix() {
        let s = input("198.51.100.7/32")
            .validate(&cluster("ip-fabric"))
            .unwrap();
        assert_eq!(s.gateway, None);
    }
}
