//! `vmfabric lab up|down|status SCENARIO`: the test scenarios as worlds a
//! user can walk around in (`ip netns exec vffb-core ping 198.51.100.0`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vmfabric_lab::scenarios::{self, Topology, Vmfabric};
use vmfabric_lab::{Lab, teardown};
use vmfabric_model::{Error, Result};

use crate::Out;
use crate::args::{LabCmd, Scenario};

/// What `lab up` leaves behind for `down` and `status`.
#[derive(Debug, Serialize, Deserialize)]
struct Inventory {
    namespaces: Vec<String>,
    pids: Vec<u32>,
    topology: Topology,
}

fn tag(s: Scenario) -> &'static str {
    match s {
        Scenario::Switching => "sw",
        Scenario::Routing => "rt",
        Scenario::Fabric => "fb",
    }
}

fn dir_of(s: Scenario, dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| PathBuf::from("/var/tmp/vmfabric-lab").join(tag(s)))
}

/// A missing prerequisite (root, a tool) is not a storage error.
fn lab_err(e: vmfabric_lab::Error) -> Error {
    match e {
        vmfabric_lab::Error::Missing(_) => Error::unavailable(format!("lab: {e}")),
        e => Error::storage(format!("lab: {e}")),
    }
}

fn inventory(dir: &Path) -> Result<Option<Inventory>> {
    match std::fs::read_to_string(dir.join("inventory.json")) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| Error::storage(format!("{} is damaged: {e}", dir.display()))),
        Err(_) => Ok(None),
    }
}

pub async fn run(cmd: LabCmd) -> Result<Out> {
    match cmd {
        LabCmd::Up { scenario, dir } => up(scenario, dir_of(scenario, dir)),
        LabCmd::Down { scenario, dir } => down(dir_of(scenario, dir)),
        LabCmd::Status { scenario, dir } => status(dir_of(scenario, dir)),
    }
}

fn up(s: Scenario, dir: PathBuf) -> Result<Out> {
    if inventory(&dir)?.is_some() {
        return Err(Error::conflict(
            "scenario",
            tag(s),
            format!(
                "a lab is already up in {}: `vmfabric lab down` first",
                dir.display()
            ),
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut lab = Lab::persistent(tag(s), &dir).map_err(lab_err)?;
    let vf = Vmfabric {
        bin: std::env::current_exe().map_err(Error::storage)?,
        db: dir.join("vmfabric.db"),
    };
    let built = match s {
        Scenario::Switching => scenarios::switching(&mut lab, &vf),
        Scenario::Routing => scenarios::routing(&mut lab, &vf, "kernel"),
        Scenario::Fabric => scenarios::fabric(&mut lab, &vf),
    };
    let topology = match built {
        Ok(t) => t,
        Err(e) => {
            lab.cleanup();
            return Err(lab_err(e));
        }
    };
    // The agents keep reconciling, so the lab follows `vm create` & co.
    for node in ["n1", "n2"] {
        let ns = topology.ns(node).to_string();
        if ns.is_empty() {
            continue;
        }
        let log =
            std::fs::File::create(dir.join(format!("agent-{node}.log"))).map_err(Error::storage)?;
        let child = vf
            .agent_cmd(&lab, &ns, node, &["--interval", "1"])
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(Error::storage)?;
        lab.track(child.id());
    }
    let (namespaces, pids) = lab.inventory();
    let inv = Inventory {
        namespaces,
        pids,
        topology,
    };
    let text = serde_json::to_string_pretty(&inv).map_err(Error::storage)?;
    std::fs::write(dir.join("inventory.json"), text).map_err(Error::storage)?;
    let mut t = format!("lab {} is up in {}\n", tag(s), dir.display());
    for (role, ns) in &inv.topology.ns {
        let _ = writeln!(t, "  {role:<6} ip netns exec {ns} ...");
    }
    let _ = writeln!(
        t,
        "  database: vmfabric --db {} vm list\n  down: vmfabric lab down {}",
        vf.db.display(),
        match s {
            Scenario::Switching => "switching",
            Scenario::Routing => "routing",
            Scenario::Fabric => "fabric",
        }
    );
    Out::new(&inv.topology, t)
}

fn down(dir: PathBuf) -> Result<Out> {
    let Some(inv) = inventory(&dir)? else {
        return Err(Error::not_found("lab", dir.display()));
    };
    teardown(&inv.namespaces, &inv.pids);
    let _ = std::fs::remove_dir_all(&dir);
    Out::new(
        &serde_json::json!({"removed": inv.namespaces}),
        format!(
            "removed {} namespaces and {} daemons\n",
            inv.namespaces.len(),
            inv.pids.len()
        ),
    )
}

fn status(dir: PathBuf) -> Result<Out> {
    let Some(inv) = inventory(&dir)? else {
        return Err(Error::not_found("lab", dir.display()));
    };
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let mut rows = Vec::new();
    let mut t = format!("lab in {}\n", dir.display());
    for (role, ns) in &inv.topology.ns {
        let up = listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns.as_str()));
        let _ = writeln!(
            t,
            "  {role:<6} {ns:<16} {}",
            if up { "up" } else { "MISSING" }
        );
        rows.push(serde_json::json!({"role": role, "namespace": ns, "up": up}));
    }
    let alive = inv
        .pids
        .iter()
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .count();
    let _ = writeln!(t, "  daemons: {alive} of {} running", inv.pids.len());
    for node in ["n1", "n2"] {
        let state = dir.join("agent").join(node).join("state.json");
        if let Ok(text) = std::fs::read_to_string(&state)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        {
            let last = &v["last"];
            let _ = writeln!(
                t,
                "  agent {node}: last round {} changes, {} failures",
                last["changes"].as_array().map_or(0, Vec::len),
                last["failures"].as_array().map_or(0, Vec::len)
            );
        }
    }
    Out::new(
        &serde_json::json!({"namespaces": rows, "daemons_running": alive}),
        t,
    )
}
