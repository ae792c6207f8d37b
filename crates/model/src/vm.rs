//! VMs and their NICs: which blocks a VM's addresses come from, what prefix
//! and gateway each address gets, and whether a VM may move.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vmfabric_ipam::Family;

use crate::block::{Block, BlockRole};
use crate::cluster::{Cluster, NetworkType};
use crate::error::{Error, Result};
use crate::names::{IfName, Mac, check_name};
use crate::network::parse_ip;
use crate::node::Node;

/// `vm create` as the user typed it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct VmInput {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    )]
    pub name: String,
    pub node: String,
    /// Explicit addresses, at most one per family.
    pub ips: Vec<String>,
    /// Also give the VM an IPv6 address.
    pub ipv6: bool,
    /// Give the VM no IPv4 address.
    pub no_ipv4: bool,
}

/// One address a new VM needs, in the order they are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressRequest {
    /// This address, from this block.
    Exact { ip: IpAddr, block: i64 },
    /// The next free address of the first of these blocks that has one.
    Next { family: Family, blocks: Vec<i64> },
}

/// The blocks a VM on `node` may take `family` addresses from, lowest first:
/// the cluster's networks (to-cluster), or the node's own ranges (to-node).
pub fn eligible_blocks<'a>(
    cluster: &Cluster,
    node: &Node,
    blocks: &'a [Block],
    family: Family,
) -> Vec<&'a Block> {
    let mut v: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.family() == family && b.cluster == cluster.name)
        .filter(|b| match cluster.network_type {
            NetworkType::Routing => b.node.as_deref() == Some(node.name.as_str()),
            _ => b.role == BlockRole::Network,
        })
        .collect();
    v.sort_by_key(|b| b.range.first);
    v
}

/// Where `family` addresses for VMs on `node` come from, for messages.
pub fn pool_label(cluster: &Cluster, node: &Node, family: Family) -> String {
    match cluster.network_type {
        NetworkType::Routing => format!("the {} ranges of node {}", family.name(), node.name),
        _ => format!("the {} pool of cluster {}", family.name(), cluster.name),
    }
}

impl VmInput {
    /// Check the VM and decide which addresses it needs from which blocks.
    /// `blocks` are the blocks of the VM's cluster.
    pub fn plan(
        &self,
        cluster: &Cluster,
        node: &Node,
        blocks: &[Block],
    ) -> Result<Vec<AddressRequest>> {
        check_name("name", &self.name)?;
        if node.cluster != cluster.name {
            return Err(Error::invalid(
                "node",
                &node.name,
                format!(
                    "node {} belongs to cluster {}, not {}",
                    node.name, node.cluster, cluster.name
                ),
            ));
        }
        let mut exact: Vec<(Family, IpAddr)> = Vec::new();
        for text in &self.ips {
            let ip = parse_ip("ip", text)?;
            let f = Family::of(ip);
            if exact.iter().any(|(g, _)| *g == f) {
                return Err(Error::invalid(
                    "ip",
                    text,
                    format!("at most one {} address per VM may be requested", f.name()),
                ));
            }
            exact.push((f, ip));
        }
        // IPv4 unless refused or the pool is IPv6-only; IPv6 when asked for
        // or when there is no IPv4.
        let exact_has = |f| exact.iter().any(|(g, _)| *g == f);
        let has = |f| !eligible_blocks(cluster, node, blocks, f).is_empty();
        if self.no_ipv4
            && let Some((_, ip)) = exact.iter().find(|(f, _)| *f == Family::V4)
        {
            return Err(Error::invalid(
                "ip",
                ip,
                "an IPv4 address was requested together with --no-ipv4",
            ));
        }
        let want_v4 = !self.no_ipv4
            && (exact_has(Family::V4)
                || has(Family::V4)
                || !(self.ipv6 || exact_has(Family::V6) || has(Family::V6)));
        let want_v6 = self.ipv6 || exact_has(Family::V6) || !want_v4;
        let families = [(Family::V4, want_v4), (Family::V6, want_v6)]
            .into_iter()
            .filter_map(|(f, w)| w.then_some(f));
        let mut requests = Vec::new();
        for family in families {
            let eligible = eligible_blocks(cluster, node, blocks, family);
            if let Some((_, ip)) = exact.iter().find(|(f, _)| *f == family) {
                let block = eligible.iter().find(|b| b.contains(*ip)).ok_or_else(|| {
                    let list: Vec<String> = eligible.iter().map(|b| b.text()).collect();
                    Error::invalid(
                        "ip",
                        ip,
                        format!(
                            "the address is outside {} ({})",
                            pool_label(cluster, node, family),
                            if list.is_empty() {
                                "none configured".to_string()
                            } else {
                                list.join(", ")
                            }
                        ),
                    )
                })?;
                requests.push(AddressRequest::Exact {
                    ip: *ip,
                    block: block.id,
                });
                continue;
            }
            if eligible.is_empty() {
                let hint = match cluster.network_type {
                    NetworkType::Routing => format!(
                        "give node {} an {} range (--subnet, --range{})",
                        node.name,
                        family.name(),
                        if family == Family::V6 { ", --ipv6" } else { "" }
                    ),
                    _ => format!(
                        "add an {} network with `vmfabric network add {} CIDR`",
                        family.name(),
                        cluster.name
                    ),
                };
                return Err(Error::conflict(
                    "family",
                    family.name(),
                    format!(
                        "nothing is configured for {}: {hint}",
                        pool_label(cluster, node, family)
                    ),
                ));
            }
            requests.push(AddressRequest::Next {
                family,
                blocks: eligible.iter().map(|b| b.id).collect(),
            });
        }
        Ok(requests)
    }
}

/// An address as the VM must configure it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NicAddress {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub address: IpAddr,
    pub prefix_len: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::IpAddress>, nullable = false))]
    pub gateway: Option<IpAddr>,
}

/// Prefix and gateway of `ip` from `block` for a VM on `node`:
/// - switching: the network's prefix and gateway (on-link);
/// - routing: IPv4 as /32 with the node's primary IP as gateway (on-link
///   route); IPv6 from the node's /64 as /64 with the node's ::2 as gateway;
/// - ip-fabric: /32 (/128) with the cluster's VM gateway, point-to-point.
pub fn nic_address(cluster: &Cluster, node: &Node, block: &Block, ip: IpAddr) -> NicAddress {
    let family = Family::of(ip);
    let host = family.bits();
    let (prefix_len, gateway) = match cluster.network_type {
        NetworkType::Switching => (block.cidr.map_or(host, |c| c.prefix_len()), block.gateway),
        NetworkType::Routing => {
            let routing = node.routing.as_ref();
            match (family, block.role) {
                (Family::V6, BlockRole::NodeIpv6) => (
                    64,
                    routing
                        .and_then(|r| r.ipv6.as_ref())
                        .map(|six| IpAddr::V6(six.address)),
                ),
                (Family::V6, _) => (
                    host,
                    routing
                        .and_then(|r| r.ipv6.as_ref())
                        .map(|six| IpAddr::V6(six.address)),
                ),
                (Family::V4, _) => (host, routing.map(|r| r.primary_ip)),
            }
        }
        NetworkType::IpFabric => (
            host,
            cluster.fabric.as_ref().map(|f| match family {
                Family::V4 => IpAddr::V4(f.vm_gateway),
                Family::V6 => IpAddr::V6(f.vm_gateway6),
            }),
        ),
    };
    NicAddress {
        address: ip,
        prefix_len,
        gateway,
    }
}

/// A VM's network card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Nic {
    pub index: u8,
    pub mac: Mac,
    /// The node-side interface: `<vm>_net<N>`.
    pub host_interface: IfName,
    pub addresses: Vec<NicAddress>,
}

/// A VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Vm {
    pub name: String,
    pub cluster: String,
    pub node: String,
    pub nics: Vec<Nic>,
}

/// Whether `cluster` lets a VM move from `from` to `to`.
pub fn check_migration(cluster: &Cluster, vm: &str, from: &Node, to: &Node) -> Result<()> {
    if cluster.network_type == NetworkType::Routing {
        return Err(Error::conflict(
            "vm",
            vm,
            format!(
                "routing clusters pin addresses to their node: {vm}'s addresses come from node {}'s ranges and are routed only to that node, so it cannot migrate; create a new VM on {} instead",
                from.name, to.name
            ),
        ));
    }
    if to.cluster != cluster.name {
        return Err(Error::invalid(
            "to",
            &to.name,
            format!(
                "node {} belongs to cluster {}; a VM migrates only between nodes of its cluster {}",
                to.name, to.cluster, cluster.name
            ),
        ));
    }
    if to.name == from.name {
        return Err(Error::invalid(
            "to",
            &to.name,
            format!("{vm} already runs on node {}", to.name),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterInput;
    use crate::node::NodeInput;
    use vmfabric_ipam::Cidr;

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

    fn node(c: &Cluster, name: &str) -> Node {
        let mut i = NodeInput {
            name: name.into(),
            address: "172.16.0.11".into(),
            ..NodeInput::default()
        };
        if c.network_type == NetworkType::Routing {
            i.address = "123.45.12.48".into();
            i.subnets = vec!["203.0.113.40/29".into()];
            i.ipv6 = Some("2a01:4f8:13b:9a7::2/64".into());
        }
        i.validate(c).unwrap().0
    }

    fn block(id: i64, c: &Cluster, node: Option<&str>, role: BlockRole, cidr: &str) -> Block {
        let cidr: Cidr = cidr.parse().unwrap();
        Block {
            id,
            cluster: c.name.clone(),
            node: node.map(String::from),
            role,
            range: cidr.range(),
            cidr: Some(cidr),
            gateway: (c.network_type == NetworkType::Switching)
                .then(|| vmfabric_ipam::key::addr(cidr.range().first + 1)),
        }
    }

    fn input(ips: &[&str], ipv6: bool, no_ipv4: bool) -> VmInput {
        VmInput {
            name: "vm1".into(),
            node: "n1".into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            ipv6,
            no_ipv4,
        }
    }

    #[test]
    fn switching_pool_is_ordered_by_address() {
        let c = cluster("switching");
        let n = node(&c, "n1");
        let blocks = [
            block(2, &c, None, BlockRole::Network, "192.0.2.32/27"),
            block(1, &c, None, BlockRole::Network, "192.0.2.0/27"),
        ];
        let plan = input(&[], false, false).plan(&c, &n, &blocks).unwrap();
        assert_eq!(
            plan,
            [AddressRequest::Next {
                family: Family::V4,
                blocks: vec![1, 2]
            }]
        );
        let a = nic_address(&c, &n, &blocks[1], "192.0.2.5".parse().unwrap());
        assert_eq!(a.prefix_len, 27);
        assert_eq!(a.gateway, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn routing_uses_only_the_nodes_ranges() {
        let c = cluster("routing");
        let n1 = node(&c, "n1");
        let blocks = [
            block(1, &c, Some("n1"), BlockRole::NodeSubnet, "203.0.113.40/29"),
            block(2, &c, Some("n2"), BlockRole::NodeSubnet, "203.0.113.48/29"),
            block(
                3,
                &c,
                Some("n1"),
                BlockRole::NodeIpv6,
                "2a01:4f8:13b:9a7::/64",
            ),
        ];
        let plan = input(&[], true, false).plan(&c, &n1, &blocks).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(
            plan[0],
            AddressRequest::Next {
                family: Family::V4,
                blocks: vec![1]
            }
        );
        let e = input(&["203.0.113.50"], false, false)
            .plan(&c, &n1, &blocks)
            .unwrap_err();
        assert!(
            e.to_string().contains("outside the IPv4 ranges of node n1"),
            "{e}"
        );
        let a = nic_address(&c, &n1, &blocks[0], "203.0.113.40".parse().unwrap());
        assert_eq!(
            (a.prefix_len, a.gateway),
            (32, Some("123.45.12.48".parse().unwrap()))
        );
        let a6 = nic_address(&c, &n1, &blocks[2], "2a01:4f8:13b:9a7::3".parse().unwrap());
        assert_eq!(a6.prefix_len, 64);
        assert_eq!(a6.gateway, Some("2a01:4f8:13b:9a7::2".parse().unwrap()));
    }

    #[test]
    fn fabric_addresses_are_host_routes_via_the_vm_gateway() {
        let c = cluster("ip-fabric");
        let n = node(&c, "n1");
        let b = block(1, &c, None, BlockRole::Network, "198.51.100.0/24");
        let a = nic_address(&c, &n, &b, "198.51.100.0".parse().unwrap());
        assert_eq!(
            (a.prefix_len, a.gateway),
            (32, Some("10.0.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn families() {
        let c = cluster("switching");
        let n = node(&c, "n1");
        let v6 = [block(1, &c, None, BlockRole::Network, "2001:db8::/64")];
        // An IPv6-only pool gives IPv6 by default.
        let plan = input(&[], false, false).plan(&c, &n, &v6).unwrap();
        assert!(matches!(
            &plan[..],
            [AddressRequest::Next {
                family: Family::V6,
                ..
            }]
        ));
        // No IPv4 network: a clear error that says how to add one.
        let e = input(&["192.0.2.9"], false, false)
            .plan(&c, &n, &v6)
            .unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        let e = input(&[], false, false).plan(&c, &n, &[]).unwrap_err();
        assert!(e.to_string().contains("network add"), "{e}");
        let e = input(&["2001:db8::5", "2001:db8::6"], false, false)
            .plan(&c, &n, &v6)
            .unwrap_err();
        assert!(e.to_string().contains("at most one"), "{e}");
    }

    #[test]
    fn migration_rules() {
        for t in ["switching", "ip-fabric"] {
            let c = cluster(t);
            check_migration(&c, "vm1", &node(&c, "n1"), &node(&c, "n2")).unwrap();
            assert!(check_migration(&c, "vm1", &node(&c, "n1"), &node(&c, "n1")).is_err());
        }
        let c = cluster("routing");
        let e = check_migration(&c, "vm1", &node(&c, "n1"), &node(&c, "n2")).unwrap_err();
        assert!(
            e.to_string()
                .contains("routing clusters pin addresses to their node")
        );
    }
}
