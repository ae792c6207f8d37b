//! Plans and rendered configuration: `node plan`, `vm guest-config`,
//! `cluster rr-config`.

use std::net::IpAddr;
use std::path::Path;

use vmfabric_model::{Error, NetworkType, Result, Virtualization};
use vmfabric_plan::render::{bird, frr, guest, ndppd, nft, summary};
use vmfabric_plan::{NodePlan, build, diff};
use vmfabric_store::{SqlStore, Store};

use crate::Out;
use crate::args::{GuestFormat, PlanFormat, RrFormat};

/// A rendered file: the text itself, or `{"format", "text"}` in JSON.
fn file(format: &str, text: String) -> Result<Out> {
    Ok(Out {
        json: serde_json::json!({"format": format, "text": text}),
        text,
    })
}

pub async fn node_plan(
    s: &SqlStore,
    name: &str,
    format: Option<PlanFormat>,
    diff_from: Option<&Path>,
    json: bool,
) -> Result<Out> {
    let plan = build(&s.plan_input(name).await?);
    if let Some(path) = diff_from {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid("diff-from", path.display(), format!("cannot read: {e}"))
        })?;
        let old: NodePlan = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(
                "diff-from",
                path.display(),
                format!("not a plan written by `vmfabric node plan --format json`: {e}"),
            )
        })?;
        if old.node != plan.node {
            return Err(Error::invalid(
                "diff-from",
                path.display(),
                format!(
                    "the file holds the plan of node {}, not {}",
                    old.node, plan.node
                ),
            ));
        }
        let changes = diff::diff(&old, &plan);
        let text = if changes.is_empty() {
            "no changes\n".to_string()
        } else {
            changes.iter().map(|c| format!("{c}\n")).collect()
        };
        return Out::new(&changes, text);
    }
    let format = format.unwrap_or(if json {
        PlanFormat::Json
    } else {
        PlanFormat::Summary
    });
    match format {
        PlanFormat::Json => {
            let text = serde_json::to_string_pretty(&plan)
                .map_err(|e| Error::storage(format!("cannot encode the plan: {e}")))?;
            Out::new(&plan, text + "\n")
        }
        PlanFormat::Summary => Out::new(&plan, summary::summary(&plan)),
        PlanFormat::Frr => match frr::node(&plan) {
            Some(t) => file("frr", t),
            None => Err(Error::invalid(
                "format",
                "frr",
                format!("node {name} runs no BGP: only nodes of ip-fabric clusters do"),
            )),
        },
        PlanFormat::Nft => file("nft", nft::ruleset(&plan, None)),
        PlanFormat::Ndppd => match ndppd::conf(&plan) {
            Some(t) => file("ndppd", t),
            None => Err(Error::invalid(
                "format",
                "ndppd",
                format!(
                    "node {name} does not use ndppd: only routing nodes with --ipv6 and --ndp-proxy ndppd do"
                ),
            )),
        },
    }
}

pub async fn guest_config(s: &SqlStore, name: &str, format: GuestFormat) -> Result<Out> {
    let vm = s.vm(name).await?;
    match format {
        GuestFormat::CloudInit => file("cloud-init", guest::cloud_init(&vm)),
        GuestFormat::Libvirt => {
            let c = s.cluster(&vm.cluster).await?;
            if c.cluster.virtualization != Virtualization::Kvm {
                return Err(Error::invalid(
                    "format",
                    "libvirt",
                    format!("VM {name} is in an lxd cluster; libvirt interfaces are for kvm VMs"),
                ));
            }
            file("libvirt", guest::libvirt(&vm))
        }
    }
}

pub async fn rr_config(
    s: &SqlStore,
    name: &str,
    format: RrFormat,
    reflector: Option<&str>,
    peers: &[String],
) -> Result<Out> {
    let c = s.cluster(name).await?.cluster;
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
    let nodes: Vec<_> = s
        .nodes(Some(name))
        .await?
        .into_iter()
        .map(|v| v.node)
        .collect();
    let text = match format {
        RrFormat::Frr => frr::reflector(&c, &nodes, rr, &peer_ips),
        RrFormat::Bird => bird::reflector(&c, &nodes, rr, &peer_ips),
    }
    .ok_or_else(|| Error::storage("no reflector configuration"))?;
    file(
        match format {
            RrFormat::Frr => "frr",
            RrFormat::Bird => "bird",
        },
        text,
    )
}
