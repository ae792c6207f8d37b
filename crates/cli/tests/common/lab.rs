//! Running vmfabric inside a lab: the CLI against the lab's database, the
//! agent inside node namespaces, VMs attached as a hypervisor would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;
use vmfabric_lab::Lab;
use vmfabric_lab::scenarios::Vmfabric;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vmfabric")
}

/// This test's vmfabric: the binary under test, the lab's database.
/// The database is created (`vmfabric init`) on first use.
pub fn vmfabric(lab: &Lab) -> Vmfabric {
    let vf = Vmfabric {
        bin: bin().into(),
        db: lab.dir.join("vmfabric.db"),
    };
    if !vf.db.exists() {
        vf.run(&["init"]).expect("vmfabric init");
    }
    vf
}

/// `vmfabric -o json ARGS`, insisting that it works.
pub fn vf(lab: &Lab, args: &[&str]) -> Value {
    vmfabric(lab).run(args).unwrap()
}

/// `vmfabric -o json ARGS`, insisting that it fails; returns the error.
#[allow(dead_code)]
pub fn vf_fails(lab: &Lab, args: &[&str]) -> String {
    match vmfabric(lab).run(args) {
        Ok(v) => panic!("vmfabric {args:?} should fail, answered {v}"),
        Err(e) => e.to_string(),
    }
}

pub fn agent_cmd(lab: &Lab, ns: &str, node: &str, extra: &[&str]) -> Command {
    vmfabric(lab).agent_cmd(lab, ns, node, extra)
}

/// One agent round on `node`; returns its report.
pub fn agent(lab: &Lab, ns: &str, node: &str) -> Value {
    vmfabric(lab).agent(lab, ns, node).unwrap()
}

/// Start VM `name` on node namespace `node_ns`: its NIC into namespace `name`.
pub fn start_vm(lab: &mut Lab, node_ns: &str, name: &str) -> String {
    let nic = vmfabric(lab).nic(name).unwrap();
    vmfabric_lab::guest::attach(lab, node_ns, name, &nic).unwrap()
}

/// The first address of VM `name`.
pub fn ip_of(lab: &Lab, name: &str) -> String {
    vmfabric(lab).ip_of(name).unwrap()
}
