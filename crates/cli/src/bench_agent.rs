//! `vmfabric bench agent` and `vmfabric bench fabric`: the node agent on a
//! real kernel, in lab namespaces, against the references of issue #4
//! measured in the same run.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use vmfabric_lab::{Lab, worlds};
use vmfabric_model::{ClusterInput, Error, NetworkInput, NodeInput, Result, VmInput};
use vmfabric_plan::{NodePlan, build, synthetic};
use vmfabric_store::ListAll;
use vmfabric_store::{SqlStore, Store};

use crate::Out;

fn lab_err(e: vmfabric_lab::Error) -> Error {
    Error::storage(format!("lab: {e}"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn p99(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len().saturating_sub(1)) as f64 * 0.99).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

/// The `ip -batch` lines that create what `plan` asks of the kernel
/// (links, their MACs and state, addresses, routes): the reference.
fn ip_batch(plan: &NodePlan) -> Vec<String> {
    let mut v = Vec::new();
    for l in &plan.links {
        match &l.peer {
            Some(p) => v.push(format!("link add {} type veth peer name {p}", l.name)),
            None => v.push(format!("link add {} type bridge", l.name)),
        }
        if let Some(m) = &l.mac {
            v.push(format!("link set {} address {m}", l.name));
        }
        v.push(format!("link set {} up", l.name));
    }
    for a in &plan.addresses {
        v.push(format!("addr add {} dev {}", a.cidr, a.dev));
    }
    for r in &plan.routes {
        v.push(format!(
            "route add {} dev {} proto {}",
            r.dst, r.dev, plan.route_protocol
        ));
    }
    v
}

fn run_agent(lab: &Lab, ns: &str, plan_file: &Path, state: &Path) -> Result<(f64, Value)> {
    let t = Instant::now();
    let out = lab
        .exec(
            ns,
            &std::env::current_exe()
                .map_err(Error::storage)?
                .to_string_lossy(),
        )
        .args([
            "--output", "json", "agent", "--once", "--node", "bench", "--plan",
        ])
        .arg(plan_file)
        .arg("--state-dir")
        .arg(state)
        .output()
        .map_err(Error::storage)?;
    let wall = t.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        return Err(Error::storage(format!(
            "agent failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let report: Value = serde_json::from_slice(&out.stdout).map_err(Error::storage)?;
    Ok((wall, report))
}

/// Apply a plan of `vms` VMs to an empty node, against `ip -batch`.
pub async fn agent(vms: u32, runs: usize) -> Result<Out> {
    let mut input = synthetic::node_input("ip-fabric", "lxd", 0, vms);
    input.node.name = "bench".into();
    let mut plan = build(&input);
    // Kernel objects only: no FRR in this measurement.
    plan.bgp = None;
    // Every object, routes included, as on a node whose guests all run:
    // the agent withholds a VM link's routes until its guest gives it
    // carrier, which no guest does here, so the links are not marked as
    // VMs' (the diff then programs their routes regardless).
    for l in &mut plan.links {
        l.vm = None;
    }
    let (mut agent_ms, mut agent_kernel_ms, mut batch_ms, mut noop_ms, mut noop_writes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        let mut lab = Lab::new("ba").map_err(lab_err)?;
        let plan_file = lab.dir.join("plan.json");
        std::fs::write(
            &plan_file,
            serde_json::to_string(&plan).map_err(Error::storage)?,
        )
        .map_err(Error::storage)?;
        let a = lab.add_ns("a").map_err(lab_err)?;
        lab.ip(
            &a,
            &[
                "link",
                "add",
                &plan.uplink,
                "type",
                "veth",
                "peer",
                "name",
                "peer0",
            ],
        )
        .map_err(lab_err)?;
        lab.ip(&a, &["link", "set", &plan.uplink, "up"])
            .map_err(lab_err)?;
        let state = lab.dir.join("state");
        let (wall, report) = run_agent(&lab, &a, &plan_file, &state)?;
        agent_ms.push(wall);
        agent_kernel_ms.push(report["kernel_micros"].as_f64().unwrap_or(0.0) / 1e3);
        // No-op rounds once the kernel has settled (IPv6 autoconfiguration
        // of thousands of new interfaces runs for a while): the median of 5.
        std::thread::sleep(Duration::from_secs(2));
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let (_, noop) = run_agent(&lab, &a, &plan_file, &state)?;
            rounds.push(noop["micros"].as_f64().unwrap_or(0.0) / 1e3);
            noop_writes.push(noop["writes"].as_f64().unwrap_or(-1.0));
        }
        noop_ms.push(median(&mut rounds));

        let b = lab.add_ns("b").map_err(lab_err)?;
        lab.ip(
            &b,
            &[
                "link",
                "add",
                &plan.uplink,
                "type",
                "veth",
                "peer",
                "name",
                "peer0",
            ],
        )
        .map_err(lab_err)?;
        let lines = ip_batch(&plan);
        let t = Instant::now();
        lab.ip_batch(&b, &lines).map_err(lab_err)?;
        batch_ms.push(t.elapsed().as_secs_f64() * 1e3);
        // Deleting a namespace of thousands of interfaces goes on in the
        // kernel after the call returns: let it finish before the next run.
        lab.cleanup();
        std::thread::sleep(Duration::from_secs(3));
    }
    let (a, k, b, n) = (
        median(&mut agent_ms),
        median(&mut agent_kernel_ms),
        median(&mut batch_ms),
        median(&mut noop_ms),
    );
    let writes = noop_writes.iter().copied().fold(0.0, f64::max);
    let objects = plan.links.len() + plan.addresses.len() + plan.routes.len();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "apply a plan of {vms} VMs ({objects} links, addresses and routes) to an empty node, median of {runs} runs:"
    );
    let _ = writeln!(text, "  ip -batch (reference)         {b:8.1} ms");
    let _ = writeln!(
        text,
        "  vmfabric agent, whole process {a:8.1} ms   {:.2}x the reference",
        a / b
    );
    let _ = writeln!(
        text,
        "  vmfabric agent, kernel part   {k:8.1} ms   {:.2}x the reference",
        k / b
    );
    let _ = writeln!(
        text,
        "no-op reconcile of that node: {n:.1} ms, {writes} writes"
    );
    let json = json!({
        "vms": vms, "objects": objects, "runs": runs,
        "ip_batch_ms": b, "agent_ms": a, "agent_kernel_ms": k,
        "ratio_whole": a / b, "ratio_kernel": k / b,
        "noop_ms": n, "noop_writes": writes,
    });
    Out::new(&json, text)
}

const CORE: &str = "frr defaults datacenter\nhostname core\nip forwarding\nno ipv6 forwarding\n!\nrouter bgp 65000\n bgp router-id 172.16.0.3\n no bgp default ipv4-unicast\n neighbor 172.16.0.2 remote-as 65000\n neighbor 172.16.0.2 timers 3 9\n neighbor 172.16.0.2 timers connect 5\n address-family ipv4 unicast\n  neighbor 172.16.0.2 activate\n exit-address-family\nexit\n!\n";

/// Whether `prefix` is in the core's kernel table, and via which node.
/// The hypervisor starts a guest once the agent made its link: the veth
/// peer comes up, the link gets carrier, and only then is it announced.
fn start_guest(lab: &Lab, node_ns: &str, host_interface: &str) -> Result<()> {
    let peer = vmfabric_plan::guest_peer(host_interface);
    if !lab.wait_for(Duration::from_secs(10), || {
        lab.ip(node_ns, &["link", "set", &peer, "up"]).is_ok()
    }) {
        return Err(Error::storage(format!("the agent did not make {peer}")));
    }
    Ok(())
}

fn core_route(lab: &Lab, core: &str, prefix: &str) -> Option<String> {
    let out = lab.ip(core, &["route", "show", prefix]).ok()?;
    let line = out.lines().next()?;
    line.split_whitespace()
        .skip_while(|w| *w != "via")
        .nth(1)
        .map(String::from)
}

/// From `vm create` to the VM's /32 at the core, and packets lost during a
/// migration, in an ip-fabric lab with agents reconciling continuously.
pub async fn fabric(vms: usize) -> Result<Out> {
    let mut lab = Lab::new("bf").map_err(lab_err)?;
    let fab = worlds::switch(&mut lab, "fab").map_err(lab_err)?;
    let mut ns = std::collections::BTreeMap::new();
    for (short, addr) in [
        ("n1", "172.16.0.11"),
        ("n2", "172.16.0.12"),
        ("rr1", "172.16.0.2"),
        ("core", "172.16.0.3"),
    ] {
        let n = worlds::node(&mut lab, &fab, short, "uplink0").map_err(lab_err)?;
        lab.ip(
            &n,
            &["addr", "add", &format!("{addr}/24"), "dev", "uplink0"],
        )
        .map_err(lab_err)?;
        ns.insert(short, n);
    }
    let db = lab.dir.join("vmfabric.db");
    let s = SqlStore::init_sqlite(&db).await?;
    s.create_cluster(&ClusterInput {
        name: "fab".into(),
        network_type: "ip-fabric".into(),
        virtualization: Some("lxd".into()),
        vm_gateway: Some("10.0.0.1".into()),
        bgp_community: Some("65000:100".into()),
        route_reflectors: vec!["172.16.0.2:65000".into()],
        ..ClusterInput::default()
    })
    .await?;
    s.add_network(
        "fab",
        &NetworkInput {
            cidr: "198.51.100.0/24".into(),
            ..NetworkInput::default()
        },
    )
    .await?;
    for (n, a) in [("n1", "172.16.0.11"), ("n2", "172.16.0.12")] {
        s.add_node(
            "fab",
            &NodeInput {
                name: n.into(),
                address: a.into(),
                uplink: Some("uplink0".into()),
                ..NodeInput::default()
            },
        )
        .await?;
    }
    let c = s.cluster("fab").await?.cluster;
    let nodes: Vec<_> = s
        .all_nodes(Some("fab"))
        .await?
        .into_iter()
        .map(|v| v.node)
        .collect();
    let rr = vmfabric_plan::render::frr::reflector(
        &c,
        &nodes,
        "172.16.0.2".parse().map_err(|_| Error::storage("ip"))?,
        &["172.16.0.3".parse().map_err(|_| Error::storage("ip"))?],
    )
    .ok_or_else(|| Error::storage("no reflector config"))?;
    worlds::frr_up(&mut lab, &ns["rr1"], &["bgpd"], &rr).map_err(lab_err)?;
    worlds::frr_up(&mut lab, &ns["core"], &["zebra", "bgpd"], CORE).map_err(lab_err)?;
    let exe = std::env::current_exe().map_err(Error::storage)?;
    for n in ["n1", "n2"] {
        worlds::frr_up(&mut lab, &ns[n], &["zebra", "bgpd", "staticd"], "").map_err(lab_err)?;
        let dir = lab.dir.join("frr").join(&ns[n]);
        let child = lab
            .exec(&ns[n], &exe.to_string_lossy())
            .arg("--db")
            .arg(&db)
            .args(["agent", "--node", n, "--interval", "0.05", "--state-dir"])
            .arg(lab.dir.join("agent").join(n))
            .arg("--frr-dir")
            .arg(&dir)
            .arg("--frr-socket")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(Error::storage)?;
        lab.track(child.id());
    }
    // Sessions up: a first VM's route reaches the core.
    let warm = s
        .create_vm(
            "fab",
            &VmInput {
                name: "warm".into(),
                node: "n1".into(),
                ..VmInput::default()
            },
        )
        .await?;
    let warm_ip = warm.nics[0].addresses[0].address.to_string();
    start_guest(&lab, &ns["n1"], &warm.nics[0].host_interface.to_string())?;
    if !lab.wait_for(Duration::from_secs(60), || {
        core_route(&lab, &ns["core"], &warm_ip).is_some()
    }) {
        return Err(Error::storage("BGP did not come up within 60 s"));
    }

    let mut lat = Vec::new();
    for i in 0..vms {
        let t = Instant::now();
        let vm = s
            .create_vm(
                "fab",
                &VmInput {
                    name: format!("b{i}"),
                    node: if i % 2 == 0 { "n1".into() } else { "n2".into() },
                    ..VmInput::default()
                },
            )
            .await?;
        let ip = vm.nics[0].addresses[0].address.to_string();
        let node = &ns[if i % 2 == 0 { "n1" } else { "n2" }];
        start_guest(&lab, node, &vm.nics[0].host_interface.to_string())?;
        if !lab.wait_for(Duration::from_secs(10), || {
            core_route(&lab, &ns["core"], &ip).is_some()
        }) {
            return Err(Error::storage(format!("{ip} never reached the core")));
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // Migration under a continuous ping from the core (every 10 ms).
    let vm = s
        .create_vm(
            "fab",
            &VmInput {
                name: "mig".into(),
                node: "n1".into(),
                ..VmInput::default()
            },
        )
        .await?;
    let ip = vm.nics[0].addresses[0].address.to_string();
    let host = vm.nics[0].host_interface.to_string();
    let nic = vmfabric_lab::guest::GuestNic {
        peer: vmfabric_plan::guest_peer(&host),
        host_interface: host.clone(),
        mac: vm.nics[0].mac.to_string(),
        index: 0,
        addresses: vm.nics[0]
            .addresses
            .iter()
            .map(|a| vmfabric_lab::guest::GuestAddress {
                address: a.address,
                prefix_len: a.prefix_len,
                gateway: a.gateway,
            })
            .collect(),
    };
    let peer_on = |lab: &Lab, n: &str| lab.ip(n, &["link", "show", &nic.peer]).is_ok();
    if !lab.wait_for(Duration::from_secs(10), || peer_on(&lab, &ns["n1"])) {
        return Err(Error::storage(
            "the agent did not create the VM's interface",
        ));
    }
    vmfabric_lab::guest::attach(&mut lab, &ns["n1"], "mig", &nic).map_err(lab_err)?;
    if !lab.wait_for(Duration::from_secs(10), || lab.ping(&ns["core"], &ip)) {
        return Err(Error::storage("the VM did not answer before migration"));
    }
    let count = 600;
    let ping = lab
        .exec(&ns["core"], "ping")
        .args(["-c", &count.to_string(), "-i", "0.01", "-W", "1", &ip])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(Error::storage)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.migrate_vm("mig", "n2").await?;
    // The hypervisor moves the VM as soon as the new node's agent made its
    // interface.
    if !lab.wait_for(Duration::from_secs(10), || peer_on(&lab, &ns["n2"])) {
        return Err(Error::storage(
            "the agent on n2 did not create the VM's interface",
        ));
    }
    vmfabric_lab::guest::attach(&mut lab, &ns["n2"], "mig", &nic).map_err(lab_err)?;
    let out = ping.wait_with_output().map_err(Error::storage)?;
    let text_out = String::from_utf8_lossy(&out.stdout);
    let received = text_out
        .lines()
        .find(|l| l.contains("received"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|w| w.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let lost_ms = (count - received) as f64 * 10.0;
    let moved = core_route(&lab, &ns["core"], &ip);

    let (m, p) = (median(&mut lat.clone()), p99(&mut lat));
    let mut text = String::new();
    let _ = writeln!(
        text,
        "vm create to /32 at the core, {vms} VMs: median {m:.0} ms, p99 {p:.0} ms"
    );
    let _ = writeln!(
        text,
        "migration under a 10 ms ping from the core: {} of {count} lost = {lost_ms:.0} ms of loss; route now via {}",
        count - received,
        moved.unwrap_or_else(|| "?".into())
    );
    let json = json!({"vms": vms, "median_ms": m, "p99_ms": p, "migration_lost_packets": count - received, "migration_loss_ms": lost_ms});
    lab.cleanup();
    Out::new(&json, text)
}
