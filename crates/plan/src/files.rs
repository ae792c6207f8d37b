//! The rendered files users ask for by name (`node plan --format frr`,
//! `vm guest-config`, `cluster rr-config`): one place that picks the
//! renderer and says clearly when a format does not apply, shared by the
//! CLI and the controller so both answer the same.

use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use vmfabric_model::{Cluster, Error, GuestNetwork, NetworkType, Node, Result, Virtualization, Vm};

use crate::NodePlan;
use crate::render::{bird, frr, guest, libvirt, lxd, ndppd, nft, summary};

/// A rendered file: its format and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub format: String,
    pub text: String,
}

fn file(format: &str, text: String) -> File {
    File {
        format: format.to_string(),
        text,
    }
}

macro_rules! formats {
    ($name:ident { $($v:ident = $s:literal),* $(,)? }, $field:literal) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($v),* }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),* }
            }
        }
        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<$name> {
                match s {
                    $($s => Ok($name::$v),)*
                    _ => Err(Error::invalid($field, s, concat!("one of", $(" ", $s),*))),
                }
            }
        }
    };
}

formats!(PlanFormat { Json = "json", Summary = "summary", Frr = "frr", Nft = "nft", Ndppd = "ndppd" }, "format");
formats!(GuestFormat { CloudInit = "cloud-init", Libvirt = "libvirt", LibvirtDomain = "libvirt-domain", Lxd = "lxd" }, "format");
formats!(RrFormat { Frr = "frr", Bird = "bird" }, "format");

/// A node's plan in a text format (`json` is the plan itself, pretty).
pub fn plan_file(plan: &NodePlan, format: PlanFormat) -> Result<File> {
    let name = &plan.node;
    match format {
        PlanFormat::Json => {
            let text = serde_json::to_string_pretty(plan)
                .map_err(|e| Error::storage(format!("cannot encode the plan: {e}")))?;
            Ok(file("json", text + "\n"))
        }
        PlanFormat::Summary => Ok(file("summary", summary::summary(plan))),
        PlanFormat::Frr => frr::node(plan).map(|t| file("frr", t)).ok_or_else(|| {
            Error::invalid(
                "format",
                "frr",
                format!("node {name} runs no BGP: only nodes of ip-fabric clusters do"),
            )
        }),
        PlanFormat::Nft => Ok(file("nft", nft::ruleset(plan, None))),
        PlanFormat::Ndppd => ndppd::conf(plan).map(|t| file("ndppd", t)).ok_or_else(|| {
            Error::invalid(
                "format",
                "ndppd",
                format!(
                    "node {name} does not use ndppd: only routing nodes with --ipv6 and --ndp-proxy ndppd do"
                ),
            )
        }),
    }
}

/// What a guest file may take besides the VM: the disk image of a libvirt
/// domain (checked with [`disk_path`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestOptions {
    pub disk: Option<String>,
}

/// Longest disk path accepted (Linux PATH_MAX).
const MAX_PATH: usize = 4096;

/// A disk image path for a libvirt domain: absolute, without control
/// characters, at most PATH_MAX bytes.
pub fn disk_path(text: &str) -> Result<String> {
    let rule =
        "an absolute path (starting with /) of at most 4096 bytes without control characters";
    if !text.starts_with('/') || text.len() > MAX_PATH || text.chars().any(char::is_control) {
        return Err(Error::invalid("disk", text, rule));
    }
    Ok(text.to_string())
}

/// The hypervisor a format is for, refused for VMs of the other one.
fn needs(vm: &Vm, cluster: &Cluster, format: GuestFormat, virt: Virtualization) -> Result<()> {
    if cluster.virtualization == virt {
        return Ok(());
    }
    let (is, wants) = match virt {
        Virtualization::Kvm => ("lxd", "kvm"),
        Virtualization::Lxd => ("kvm", "lxd"),
    };
    Err(Error::invalid(
        "format",
        format.as_str(),
        format!(
            "VM {} is in {is} cluster {}; format {} is for VMs of {wants} clusters",
            vm.name,
            cluster.name,
            format.as_str()
        ),
    ))
}

/// A VM's guest network configuration, or its hypervisor's definition;
/// `node` is the VM's (its DNS, in routing clusters).
pub fn guest_file(
    vm: &Vm,
    cluster: &Cluster,
    node: &Node,
    format: GuestFormat,
    options: &GuestOptions,
) -> Result<File> {
    if let Some(d) = &options.disk
        && format != GuestFormat::LibvirtDomain
    {
        return Err(Error::invalid(
            "disk",
            d,
            format!(
                "a disk image is part of format libvirt-domain only, not {}",
                format.as_str()
            ),
        ));
    }
    let net = GuestNetwork::of(cluster, Some(node));
    let text = match format {
        GuestFormat::CloudInit => guest::cloud_init(vm, &net),
        GuestFormat::Libvirt => {
            needs(vm, cluster, format, Virtualization::Kvm)?;
            libvirt::interfaces_xml(vm)
        }
        GuestFormat::LibvirtDomain => {
            needs(vm, cluster, format, Virtualization::Kvm)?;
            let disk = options.disk.as_deref().map(disk_path).transpose()?;
            libvirt::domain(vm, disk.as_deref())
        }
        GuestFormat::Lxd => {
            needs(vm, cluster, format, Virtualization::Lxd)?;
            lxd::instance(vm, &net)
        }
    };
    Ok(file(format.as_str(), text))
}

/// The configuration of one route reflector of an ip-fabric cluster (the
/// first one unless `reflector` names another), with every node as a client
/// and `peers` (e.g. the core) as non-client iBGP neighbours.
pub fn rr_file(
    c: &Cluster,
    nodes: &[Node],
    format: RrFormat,
    reflector: Option<&str>,
    peers: &[String],
) -> Result<File> {
    let name = &c.name;
    let Some(f) = c
        .fabric
        .as_ref()
        .filter(|_| c.network_type == NetworkType::IpFabric)
    else {
        return Err(Error::invalid(
            "cluster",
            name,
            "route reflectors belong to ip-fabric clusters",
        ));
    };
    let rr: IpAddr = match reflector {
        Some(text) => {
            let ip: IpAddr = text.trim().parse().map_err(|_| {
                Error::invalid("reflector", text, "must be an IPv4 or IPv6 address")
            })?;
            if !f.route_reflectors.iter().any(|r| r.address == ip) {
                let list: Vec<String> = f
                    .route_reflectors
                    .iter()
                    .map(|r| r.address.to_string())
                    .collect();
                return Err(Error::invalid(
                    "reflector",
                    text,
                    format!(
                        "not a route reflector of cluster {name} ({})",
                        list.join(", ")
                    ),
                ));
            }
            ip
        }
        None => f
            .route_reflectors
            .first()
            .map(|r| r.address)
            .ok_or_else(|| Error::storage("an ip-fabric cluster without route reflectors"))?,
    };
    let mut peer_ips = Vec::new();
    for p in peers {
        peer_ips.push(
            p.trim()
                .parse::<IpAddr>()
                .map_err(|_| Error::invalid("peer", p, "must be an IPv4 or IPv6 address"))?,
        );
    }
    let text = match format {
        RrFormat::Frr => frr::reflector(c, nodes, rr, &peer_ips),
        RrFormat::Bird => bird::reflector(c, nodes, rr, &peer_ips),
    }
    .ok_or_else(|| Error::storage("no reflector configuration"))?;
    Ok(file(format.as_str(), text))
}
