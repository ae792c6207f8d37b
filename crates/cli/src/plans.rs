//! Plans and rendered configuration: `node plan`, `vm guest-config`,
//! `cluster rr-config`. The store (local or the controller) gives the data;
//! rendering happens here, with the same code the controller uses.

use std::path::Path;

use vmfabric_model::{Error, Result};
use vmfabric_plan::files::{self, File};
use vmfabric_plan::{NodePlan, build, diff};
use vmfabric_store::ListAll;
use vmfabric_store::Store;

use crate::Out;
use crate::args::{GuestFormat, PlanFormat, RrFormat};

/// A rendered file: the text itself, or `{"format", "text"}` in JSON.
fn out(f: File) -> Result<Out> {
    Out::new(
        &serde_json::json!({"format": f.format, "text": f.text}),
        f.text,
    )
}

pub async fn node_plan(
    s: &dyn Store,
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
    let f = match format {
        PlanFormat::Json => files::PlanFormat::Json,
        PlanFormat::Summary => files::PlanFormat::Summary,
        PlanFormat::Frr => files::PlanFormat::Frr,
        PlanFormat::Nft => files::PlanFormat::Nft,
        PlanFormat::Ndppd => files::PlanFormat::Ndppd,
    };
    let rendered = files::plan_file(&plan, f)?;
    match format {
        // The plan itself is the JSON document of these two.
        PlanFormat::Json | PlanFormat::Summary => Out::new(&plan, rendered.text),
        _ => out(rendered),
    }
}

pub async fn guest_config(
    s: &dyn Store,
    name: &str,
    format: GuestFormat,
    disk: Option<String>,
) -> Result<Out> {
    let vm = s.vm(name).await?;
    let c = s.cluster(&vm.cluster).await?.cluster;
    let node = s.node(&vm.node).await?.node;
    let f = match format {
        GuestFormat::CloudInit => files::GuestFormat::CloudInit,
        GuestFormat::Libvirt => files::GuestFormat::Libvirt,
        GuestFormat::LibvirtDomain => files::GuestFormat::LibvirtDomain,
        GuestFormat::Lxd => files::GuestFormat::Lxd,
    };
    out(files::guest_file(
        &vm,
        &c,
        &node,
        f,
        &files::GuestOptions { disk },
    )?)
}

pub async fn rr_config(
    s: &dyn Store,
    name: &str,
    format: RrFormat,
    reflector: Option<&str>,
    peers: &[String],
) -> Result<Out> {
    let c = s.cluster(name).await?.cluster;
    let nodes: Vec<_> = s
        .all_nodes(Some(name))
        .await?
        .into_iter()
        .map(|v| v.node)
        .collect();
    let f = match format {
        RrFormat::Frr => files::RrFormat::Frr,
        RrFormat::Bird => files::RrFormat::Bird,
    };
    out(files::rr_file(&c, &nodes, f, reflector, peers)?)
}
