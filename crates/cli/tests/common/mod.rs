//! Running the real `vmfabric` binary against a fresh SQLite file.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub json: Value,
    pub err: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("vmfabric.db");
        let env = Env { dir, db };
        let init = env.run(&["init"]);
        assert_eq!(init.code, 0, "vmfabric init: {}", init.stderr);
        env
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vmfabric"));
        c.arg("--db").arg(&self.db).env_remove("VMFABRIC_DB");
        c
    }

    /// Run with `--output json`.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self
            .cmd()
            .args(["--output", "json"])
            .args(args)
            .output()
            .unwrap();
        parse(out)
    }

    /// Run, and insist it worked.
    pub fn ok(&self, args: &[&str]) -> Value {
        let r = self.run(args);
        assert_eq!(r.code, 0, "vmfabric {args:?} failed: {}", r.stderr);
        r.json
    }

    /// Run, and insist it failed with this exit code; returns the error.
    pub fn fails(&self, code: i32, args: &[&str]) -> Value {
        let r = self.run(args);
        assert_eq!(
            r.code, code,
            "vmfabric {args:?}: stdout {} stderr {}",
            r.stdout, r.stderr
        );
        assert!(
            r.stdout.is_empty(),
            "failed command printed to stdout: {}",
            r.stdout
        );
        r.err["error"].clone()
    }

    /// Everything in the database, as text: the state a failed command
    /// must leave untouched.
    pub fn dump(&self) -> String {
        let out = Command::new("sqlite3")
            .arg(&self.db)
            .arg(".dump")
            .output()
            .expect("the tests need the sqlite3 command: apt-get install sqlite3");
        assert!(out.status.success(), "sqlite3 .dump failed");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The seed's three clusters: switching, routing, ip-fabric.
    pub fn seed_world(&self) {
        for args in SEED_WORLD {
            self.ok(args);
        }
    }
}

/// The seed's ip-fabric cluster: VM gateway 10.0.0.1, community
/// 65000:100, one route reflector.
pub const FABRIC_CLUSTER: &[&str] = &[
    "cluster",
    "create",
    "fab",
    "--type",
    "ip-fabric",
    "--vm-gateway",
    "10.0.0.1",
    "--bgp-community",
    "65000:100",
    "--route-reflector",
    "172.16.0.2:65000",
];

/// The seeds' three clusters, each with its networks and two nodes:
/// switching `sw` (kvm1, kvm2), routing `hz` (hz1, hz2), ip-fabric `fab`
/// (node1, node2).
pub const SEED_WORLD: &[&[&str]] = &[
    &["cluster", "create", "sw", "--type", "switching"],
    &["network", "add", "sw", "192.0.2.0/27"],
    &["network", "add", "sw", "192.0.2.32/27"],
    &["node", "add", "sw", "kvm1", "--address", "192.0.2.2"],
    &["node", "add", "sw", "kvm2", "--address", "192.0.2.3"],
    &["cluster", "create", "hz", "--type", "routing"],
    &[
        "node",
        "add",
        "hz",
        "hz1",
        "--address",
        "123.45.12.48",
        "--subnet",
        "203.0.113.40/29",
        "--ipv6",
        "2a01:4f8:13b:9a7::2/64",
    ],
    &[
        "node",
        "add",
        "hz",
        "hz2",
        "--address",
        "123.45.12.49",
        "--subnet",
        "203.0.113.48/29",
    ],
    FABRIC_CLUSTER,
    &["network", "add", "fab", "198.51.100.0/24"],
    &["node", "add", "fab", "node1", "--address", "172.16.0.11"],
    &["node", "add", "fab", "node2", "--address", "172.16.0.12"],
];

pub fn parse(out: Output) -> Run {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    Run {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        err: serde_json::from_str(stderr.trim()).unwrap_or(Value::Null),
        stdout,
        stderr,
    }
}

/// The first address of a VM's first NIC, from `vm create`/`vm show` JSON.
pub fn first_ip(vm: &Value) -> String {
    vm["nics"][0]["addresses"][0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}
pub mod controller;
pub mod lab;
