//! The three lab scenarios end to end through the controller: `vmfabric
//! serve` in a namespace of its own, reached by each node over a
//! management link, and each node's agent long-polling it with its node
//! token. A VM created by an HTTP request answers pings from the gateway,
//! the provider or the core with no other step than the hypervisor
//! starting it; the agents report their rounds; a deletion withdraws it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::controller::{Reap, Serve, serve_with, token};
use common::lab::vmfabric;
use serde_json::Value;
use vmfabric_lab::Lab;
use vmfabric_lab::scenarios::{self, Topology, Vmfabric};

/// The controller and the agents of a lab, stopped when dropped.
struct Controlled {
    ctl: String,
    op: String,
    viewer: String,
    // Fields drop in order: the agents stop before the controller they poll.
    _agents: Vec<Reap>,
    _serve: Serve,
}

/// Where commands run inside the controller's namespace reach it.
const URL: &str = "http://127.0.0.1:7480";

impl Controlled {
    /// `vmfabric --server URL --token T -o json ARGS`, in the controller's
    /// namespace; insists that it works.
    fn run(&self, lab: &Lab, tok: &str, args: &[&str]) -> Value {
        let out = lab
            .exec(&self.ctl, env!("CARGO_BIN_EXE_vmfabric"))
            .args(["--server", URL, "--token", tok, "-o", "json"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} through the controller: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// What the agents last reported, through the API.
    fn reports(&self, lab: &Lab) -> Vec<Value> {
        self.run(lab, &self.viewer, &["agent", "reports"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Start the controller on the lab's database in namespace `ctl`, wire a
/// management link to each of `nodes` (10.255.N.0/30, the way operators
/// keep control traffic off the customer network), and run each node's
/// agent against the controller with its own node token.
fn controlled(lab: &mut Lab, vf: &Vmfabric, t: &Topology, nodes: &[&str]) -> Controlled {
    let db = vf.db.to_string_lossy().to_string();
    let ctl = lab.add_ns("ctl").unwrap();
    let mut agents = Vec::new();
    let mut cmd = lab.exec(&ctl, env!("CARGO_BIN_EXE_vmfabric"));
    cmd.args(["--db", &db, "serve", "--listen", "0.0.0.0:7480"]);
    let serve = serve_with(cmd);
    lab.track(serve.child.id());
    assert_eq!(serve.url, "http://0.0.0.0:7480");
    for (i, n) in nodes.iter().enumerate() {
        let ns = t.ns(n);
        let m = format!("m{i}");
        lab.wire(ns, "mgmt0", &ctl, &m).unwrap();
        lab.ip(
            ns,
            &["addr", "add", &format!("10.255.{i}.2/30"), "dev", "mgmt0"],
        )
        .unwrap();
        lab.ip(
            &ctl,
            &["addr", "add", &format!("10.255.{i}.1/30"), "dev", &m],
        )
        .unwrap();
        let tok = token(&db, "node", Some(n));
        let url = format!("http://10.255.{i}.1:7480");
        let agent = vf
            .agent_cmd_from(
                lab,
                ns,
                n,
                &["--server", &url, "--token", &tok],
                &["--interval", "30"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        lab.track(agent.id());
        agents.push(Reap(agent));
    }
    let c = Controlled {
        ctl,
        op: token(&db, "operator", None),
        viewer: token(&db, "viewer", None),
        _agents: agents,
        _serve: serve,
    };
    let reported = lab.wait_for(Duration::from_secs(30), || {
        c.reports(lab).len() == nodes.len()
    });
    assert!(reported, "every agent reports to the controller");
    c
}

/// Create `vm` on `node` over HTTP, wait for its interface (the agent's
/// doing), start it as the hypervisor would; returns its first address.
fn create_and_start(
    lab: &mut Lab,
    vf: &Vmfabric,
    t: &mut Topology,
    c: &Controlled,
    cluster: &str,
    vm: &str,
    node: &str,
) -> String {
    let created = Instant::now();
    let out = c.run(lab, &c.op, &["vm", "create", cluster, vm, "--node", node]);
    let ip = out["nics"][0]["addresses"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let host_if = out["nics"][0]["host_interface"]
        .as_str()
        .unwrap()
        .to_string();
    let built = lab.wait_for(Duration::from_secs(10), || {
        lab.ip(t.ns(node), &["link", "show", &host_if]).is_ok()
    });
    assert!(built, "{node}'s agent made {host_if}");
    eprintln!(
        "{vm}: {host_if} on {node} {} ms after the create request",
        created.elapsed().as_millis()
    );
    // The agent reported the round that made it (before the guest
    // starts: its start wakes the agent for a round of its own, whose
    // report replaces this one).
    let applied = lab.wait_for(Duration::from_secs(10), || {
        c.reports(lab)
            .iter()
            .any(|a| a["node"] == node && a["report"]["changes"].to_string().contains(&host_if))
    });
    assert!(applied, "{node} reported the change: {:?}", c.reports(lab));
    vf.start_vm(lab, t, node, vm).unwrap();
    ip
}

#[test]
fn switching_through_the_controller() {
    let mut lab = Lab::new("sc").expect("lab");
    let vf = vmfabric(&lab);
    let mut t = scenarios::switching(&mut lab, &vf).unwrap();
    let c = controlled(&mut lab, &vf, &t, &["n1", "n2"]);
    let ip = create_and_start(&mut lab, &vf, &mut t, &c, "rack", "vm4", "n2");
    assert!(lab.ping(t.ns("dc"), &ip), "gateway -> vm4 ({ip})");
    assert!(
        lab.ping(t.ns("vm4"), &vf.ip_of("vm1").unwrap()),
        "vm4 (n2) -> vm1 (n1)"
    );
    c.run(&lab, &c.op, &["vm", "delete", "vm4"]);
    let gone = lab.wait_for(Duration::from_secs(10), || {
        lab.ip(t.ns("n2"), &["link", "show", "vm4_net0"]).is_err()
    });
    assert!(gone, "n2's agent removed vm4's interface");
}

#[test]
fn routing_through_the_controller() {
    let mut lab = Lab::new("rc").expect("lab");
    let vf = vmfabric(&lab);
    let mut t = scenarios::routing(&mut lab, &vf, "kernel").unwrap();
    let c = controlled(&mut lab, &vf, &t, &["n1"]);
    let ip = create_and_start(&mut lab, &vf, &mut t, &c, "hz", "vm3", "n1");
    assert_eq!(ip, "203.0.113.42", "the next address of the node's subnet");
    assert!(lab.ping(t.ns("dc"), &ip), "provider -> vm3");
    assert!(lab.ping(t.ns("vm3"), "192.0.2.1"), "vm3 -> provider");
}

#[test]
fn fabric_through_the_controller() {
    let mut lab = Lab::new("fc").expect("lab");
    let vf = vmfabric(&lab);
    let mut t = scenarios::fabric(&mut lab, &vf).unwrap();
    let c = controlled(&mut lab, &vf, &t, &["n1", "n2"]);
    let created = Instant::now();
    let ip = create_and_start(&mut lab, &vf, &mut t, &c, "fab", "vm4", "n2");
    let reached = lab.wait_for(Duration::from_secs(30), || {
        lab.ip(t.ns("core"), &["route", "show", &format!("{ip}/32")])
            .is_ok_and(|r| r.contains("172.16.0.12"))
    });
    assert!(reached, "vm4's /32 reaches the core via n2");
    assert!(lab.ping(t.ns("core"), &ip), "core -> vm4");
    eprintln!(
        "vm4: pinged from the core {} ms after the create request",
        created.elapsed().as_millis()
    );
    // Deleting it over HTTP withdraws the route from the core.
    c.run(&lab, &c.op, &["vm", "delete", "vm4"]);
    let gone = lab.wait_for(Duration::from_secs(30), || {
        lab.ip(t.ns("core"), &["route", "show", &format!("{ip}/32")])
            .is_ok_and(|r| r.trim().is_empty())
    });
    assert!(gone, "vm4's route leaves the core after the delete");
}
