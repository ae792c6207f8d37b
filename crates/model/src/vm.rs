//! VMs and their NICs: which blocks a VM's addresses come from, what prefix
//! and gateway each address gets, and whether a VM may move.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vmfabric_ipam::Family;

use crate::block::{Block, BlockRole};
use crate::cluster::{Cluster, NetworkType};
use crate::error::{Error, Result};
use crate::names::{IfName, MAX_NIC_INDEX, Mac, check_name};
use crate::network::parse_ip;
use crate::node::Node;

/// `vm create` as the user typed it. The simple form (top-level fields)
/// describes one NIC; `nics` describes each NIC instead.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VmInput {
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    )]
    pub name: String,
    pub node: String,
    /// Explicit addresses, at most one per family.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::IpAddress>))]
    pub ips: Vec<String>,
    /// Also give the VM an IPv6 address.
    #[serde(default)]
    pub ipv6: bool,
    /// Give the VM no IPv4 address.
    #[serde(default)]
    pub no_ipv4: bool,
    /// This many more IPv4 addresses on the first NIC.
    // Left out when zero, so that a stored idempotency fingerprint of a
    // simple request stays the same.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extra_ipv4: u8,
    /// This many more IPv6 addresses on the first NIC (implies IPv6).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub extra_ipv6: u8,
    /// Every NIC of the VM, `<vm>_net0` first; when given, the address
    /// fields above stay empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<NicInput>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// One NIC of a new VM: the same choices as the simple form of `vm create`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct NicInput {
    /// Explicit addresses, at most one per family.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::IpAddress>))]
    pub ips: Vec<String>,
    /// Also give the NIC an IPv6 address.
    pub ipv6: bool,
    /// Give the NIC no IPv4 address.
    pub no_ipv4: bool,
    /// This many more IPv4 addresses.
    pub extra_ipv4: u8,
    /// This many more IPv6 addresses (implies IPv6).
    pub extra_ipv6: u8,
}

/// The most addresses of one family a new NIC takes beyond its first: a
/// bound on what one request can hold, far above what a guest uses.
pub const MAX_EXTRA_ADDRESSES: u8 = 63;

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
    /// The simple form on `count` NICs: the first as given, each further
    /// one with the same families (no explicit addresses, no extras).
    pub fn with_nic_count(mut self, count: u8) -> VmInput {
        if count <= 1 {
            return self;
        }
        let first = NicInput {
            ips: std::mem::take(&mut self.ips),
            ipv6: self.ipv6,
            no_ipv4: self.no_ipv4,
            extra_ipv4: std::mem::take(&mut self.extra_ipv4),
            extra_ipv6: std::mem::take(&mut self.extra_ipv6),
        };
        let more = NicInput {
            ipv6: self.ipv6 || first.extra_ipv6 > 0,
            no_ipv4: self.no_ipv4,
            ..NicInput::default()
        };
        self.ipv6 = false;
        self.no_ipv4 = false;
        self.nics = std::iter::once(first)
            .chain(std::iter::repeat_n(more, usize::from(count) - 1))
            .collect();
        self
    }

    /// Each NIC the VM gets, in order: `nics`, or the simple form as one.
    pub fn nic_inputs(&self) -> Result<Vec<NicInput>> {
        if self.nics.is_empty() {
            return Ok(vec![NicInput {
                ips: self.ips.clone(),
                ipv6: self.ipv6,
                no_ipv4: self.no_ipv4,
                extra_ipv4: self.extra_ipv4,
                extra_ipv6: self.extra_ipv6,
            }]);
        }
        let simple = [
            ("ips", !self.ips.is_empty()),
            ("ipv6", self.ipv6),
            ("no_ipv4", self.no_ipv4),
            ("extra_ipv4", self.extra_ipv4 != 0),
            ("extra_ipv6", self.extra_ipv6 != 0),
        ];
        if let Some((field, _)) = simple.iter().find(|(_, set)| *set) {
            return Err(Error::invalid(
                field,
                "set",
                "with a list of nics, give each NIC's addresses in its own entry",
            ));
        }
        let most = usize::from(MAX_NIC_INDEX) + 1;
        if self.nics.len() > most {
            return Err(Error::invalid(
                "nics",
                self.nics.len(),
                format!("a VM has at most {most} NICs"),
            ));
        }
        Ok(self.nics.clone())
    }

    /// Check the VM and decide which addresses each of its NICs needs from
    /// which blocks (one list per NIC, in NIC order). `blocks` are the
    /// blocks of the VM's cluster.
    pub fn plan(
        &self,
        cluster: &Cluster,
        node: &Node,
        blocks: &[Block],
    ) -> Result<Vec<Vec<AddressRequest>>> {
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
        let nics = self.nic_inputs()?;
        let mut seen: Vec<IpAddr> = Vec::new();
        let mut plans = Vec::with_capacity(nics.len());
        for (i, nic) in nics.iter().enumerate() {
            // Errors name the NIC when there are several.
            let field = |f: &str| {
                if self.nics.is_empty() {
                    f.to_string()
                } else {
                    format!("nics[{i}].{f}")
                }
            };
            let requests = nic.plan(cluster, node, blocks, &field)?;
            for r in &requests {
                if let AddressRequest::Exact { ip, .. } = r {
                    if seen.contains(ip) {
                        return Err(Error::invalid(
                            &field("ips"),
                            ip,
                            "the address is asked for twice",
                        ));
                    }
                    seen.push(*ip);
                }
            }
            plans.push(requests);
        }
        Ok(plans)
    }
}

impl NicInput {
    /// The addresses this NIC needs: explicit ones from the block holding
    /// them, the others as the next free of the eligible blocks.
    fn plan(
        &self,
        cluster: &Cluster,
        node: &Node,
        blocks: &[Block],
        field: &dyn Fn(&str) -> String,
    ) -> Result<Vec<AddressRequest>> {
        for (f, n) in [
            ("extra_ipv4", self.extra_ipv4),
            ("extra_ipv6", self.extra_ipv6),
        ] {
            if n > MAX_EXTRA_ADDRESSES {
                return Err(Error::invalid(
                    &field(f),
                    n,
                    format!("at most {MAX_EXTRA_ADDRESSES} more addresses of a family per NIC"),
                ));
            }
        }
        if self.no_ipv4 && self.extra_ipv4 > 0 {
            return Err(Error::invalid(
                &field("extra_ipv4"),
                self.extra_ipv4,
                "extra IPv4 addresses were requested together with --no-ipv4",
            ));
        }
        let mut exact: Vec<(Family, IpAddr)> = Vec::new();
        for text in &self.ips {
            let ip = parse_ip(&field("ip"), text)?;
            let f = Family::of(ip);
            if exact.iter().any(|(g, _)| *g == f) {
                return Err(Error::invalid(
                    &field("ip"),
                    text,
                    format!(
                        "at most one {} address per NIC may be requested (the others come with --extra-{})",
                        f.name(),
                        f.name().to_lowercase()
                    ),
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
                &field("ip"),
                ip,
                "an IPv4 address was requested together with --no-ipv4",
            ));
        }
        let asks_v6 = self.ipv6 || exact_has(Family::V6) || self.extra_ipv6 > 0;
        let want_v4 = !self.no_ipv4
            && (exact_has(Family::V4)
                || self.extra_ipv4 > 0
                || has(Family::V4)
                || !(asks_v6 || has(Family::V6)));
        let want_v6 = asks_v6 || !want_v4;
        let families = [
            (Family::V4, want_v4, self.extra_ipv4),
            (Family::V6, want_v6, self.extra_ipv6),
        ]
        .into_iter()
        .filter(|(_, w, _)| *w);
        let mut requests = Vec::new();
        for (family, _, extra) in families {
            let eligible = eligible_blocks(cluster, node, blocks, family);
            let exact_ip = exact.iter().find(|(f, _)| *f == family).map(|(_, ip)| *ip);
            if let Some(ip) = exact_ip {
                let block = eligible.iter().find(|b| b.contains(ip)).ok_or_else(|| {
                    let list: Vec<String> = eligible.iter().map(|b| b.text()).collect();
                    Error::invalid(
                        &field("ip"),
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
                    ip,
                    block: block.id,
                });
                if extra == 0 {
                    continue;
                }
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
            let next = usize::from(extra) + usize::from(exact_ip.is_none());
            for _ in 0..next {
                requests.push(AddressRequest::Next {
                    family,
                    blocks: eligible.iter().map(|b| b.id).collect(),
                });
            }
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
            ..VmInput::default()
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
            plan[..],
            [vec![AddressRequest::Next {
                family: Family::V4,
                blocks: vec![1, 2]
            }]]
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
        let plan = &plan[0];
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
            &plan[0][..],
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
    fn several_nics_and_extra_addresses() {
        let c = cluster("switching");
        let n = node(&c, "n1");
        let blocks = [
            block(1, &c, None, BlockRole::Network, "192.0.2.0/27"),
            block(2, &c, None, BlockRole::Network, "2001:db8::/64"),
        ];
        let next = |f| AddressRequest::Next {
            family: f,
            blocks: vec![if f == Family::V4 { 1 } else { 2 }],
        };
        // The simple form with extras: the first address and two more.
        let mut one = input(&["192.0.2.9"], false, false);
        one.extra_ipv4 = 2;
        one.extra_ipv6 = 1;
        let plan = one.plan(&c, &n, &blocks).unwrap();
        let exact = AddressRequest::Exact {
            ip: "192.0.2.9".parse().unwrap(),
            block: 1,
        };
        assert_eq!(
            plan,
            [vec![
                exact.clone(),
                next(Family::V4),
                next(Family::V4),
                next(Family::V6),
                next(Family::V6)
            ]]
        );
        // A list of NICs: each by the rules of the simple form.
        let mut list = input(&[], false, false);
        list.nics = vec![
            NicInput {
                ips: vec!["192.0.2.9".into()],
                ..NicInput::default()
            },
            NicInput {
                no_ipv4: true,
                ipv6: true,
                ..NicInput::default()
            },
            NicInput::default(),
        ];
        let plan = list.plan(&c, &n, &blocks).unwrap();
        assert_eq!(
            plan,
            [vec![exact], vec![next(Family::V6)], vec![next(Family::V4)]]
        );
        // Refusals name the NIC, the value and the rule.
        list.nics[2].ips = vec!["192.0.2.9".into()];
        let e = list.plan(&c, &n, &blocks).unwrap_err();
        assert!(e.to_string().contains("nics[2].ips"), "{e}");
        assert!(e.to_string().contains("asked for twice"), "{e}");
        list.nics[2] = NicInput {
            no_ipv4: true,
            extra_ipv4: 1,
            ..NicInput::default()
        };
        let e = list.plan(&c, &n, &blocks).unwrap_err();
        assert!(e.to_string().contains("nics[2].extra_ipv4"), "{e}");
        list.nics[2] = NicInput {
            extra_ipv6: MAX_EXTRA_ADDRESSES + 1,
            ..NicInput::default()
        };
        let e = list.plan(&c, &n, &blocks).unwrap_err();
        assert!(e.to_string().contains("at most 63"), "{e}");
        list.nics = vec![NicInput::default(); usize::from(MAX_NIC_INDEX) + 2];
        let e = list.plan(&c, &n, &blocks).unwrap_err();
        assert!(e.to_string().contains("at most 10 NICs"), "{e}");
        // The simple fields and a list do not mix.
        list.nics.truncate(2);
        list.ipv6 = true;
        let e = list.plan(&c, &n, &blocks).unwrap_err();
        assert!(e.to_string().contains("each NIC's addresses"), "{e}");
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
