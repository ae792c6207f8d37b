//! Running vmfabric inside a lab: the CLI against the lab's database, the
//! agent inside node namespaces, VMs attached as a hypervisor would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use vmfabric_lab::Lab;
use vmfabric_lab::guest::{GuestAddress, GuestNic, attach};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vmfabric")
}

pub fn db(lab: &Lab) -> PathBuf {
    lab.dir.join("vmfabric.db")
}

/// `vmfabric --db LAB_DB -o json ARGS`, insisting that it works.
pub fn vf(lab: &Lab, args: &[&str]) -> Value {
    let out = Command::new(bin())
        .arg("--db")
        .arg(db(lab))
        .args(["--output", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vmfabric {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The agent's command line for `node` inside namespace `ns`.
pub fn agent_cmd(lab: &Lab, ns: &str, node: &str, extra: &[&str]) -> Command {
    let state = lab.dir.join("agent").join(node);
    let mut c = lab.exec(ns, bin());
    c.arg("--db")
        .arg(db(lab))
        .args(["--output", "json", "agent", "--node", node])
        .arg("--state-dir")
        .arg(&state)
        .arg("--frr-dir")
        .arg(lab.dir.join("frr").join(ns))
        .arg("--frr-socket")
        .arg(lab.dir.join("frr").join(ns))
        .arg("--ndppd-conf")
        .arg(state.join("ndppd.conf"))
        .arg("--ndppd-pid")
        .arg(state.join("ndppd.pid"))
        .args(extra);
    c
}

/// One agent round on `node`; returns its report.
pub fn agent(lab: &Lab, ns: &str, node: &str) -> Value {
    let out = agent_cmd(lab, ns, node, &["--once"]).output().unwrap();
    assert!(
        out.status.success(),
        "agent on {node}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The guest's view of VM `name`'s first NIC.
pub fn nic(lab: &Lab, name: &str) -> GuestNic {
    let v = vf(lab, &["vm", "show", name]);
    let n = &v["nics"][0];
    let host = n["host_interface"].as_str().unwrap().to_string();
    GuestNic {
        peer: vmfabric_plan::guest_peer(&host),
        host_interface: host,
        mac: n["mac"].as_str().unwrap().to_string(),
        index: 0,
        addresses: n["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| GuestAddress {
                address: a["address"].as_str().unwrap().parse().unwrap(),
                prefix_len: u8::try_from(a["prefix_len"].as_u64().unwrap()).unwrap(),
                gateway: a["gateway"].as_str().map(|g| g.parse().unwrap()),
            })
            .collect(),
    }
}

/// Start VM `name` on node namespace `node_ns`: its NIC into namespace `name`.
pub fn start_vm(lab: &mut Lab, node_ns: &str, name: &str) -> String {
    let n = nic(lab, name);
    attach(lab, node_ns, name, &n).unwrap()
}

/// The first address of VM `name`.
pub fn ip_of(lab: &Lab, name: &str) -> String {
    vf(lab, &["vm", "show", name])["nics"][0]["addresses"][0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}
