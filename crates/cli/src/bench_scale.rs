//! `vmfabric bench scale`: one controller (or two on PostgreSQL) serving
//! an installation of the yardstick's size, with every agent long-polling
//! its plan and VMs created at a steady rate, each part its own process:
//!
//! - the installation is built once through the store (nodes, VMs in
//!   batches), and a second one holding only the measured node and its VMs
//!   (the "empty installation" a node's plan is compared with);
//! - `vmfabric serve` answers, in a process of its own;
//! - `vmfabric bench scale-agents` holds one long poll per node, on real
//!   HTTP connections, and writes down every answer (which VMs it added);
//! - `vmfabric bench scale-load` creates VMs at a steady rate on random
//!   nodes and writes down when each create was answered.
//!
//! The table: a node's plan p50/p99 (API and CLI) at full size against the
//! empty installation, change-to-agent latency, answers to agents whose
//! plan did not change (must be 0), changes never delivered (must be 0),
//! controller CPU per change and memory per waiting agent.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use vmfabric_model::{ClusterInput, Error, NetworkInput, NodeInput, Result, TokenInput, VmInput};
use vmfabric_store::{SqlStore, Store, SystemClock, VmRequest};

use crate::Out;
use crate::args::{ScaleAgentsArgs, ScaleArgs, ScaleLoadArgs};
use crate::bench_serve::{Serve, pg_database, start_serve};

const CLUSTER: &str = "fab";

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn node_name(i: usize) -> String {
    format!("n{i:05}")
}

fn node_address(i: usize) -> String {
    format!("172.16.{}.{}", i / 250, i % 250 + 2)
}

fn storage(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::storage(format!("{what}: {e}"))
}

// --- the installation -------------------------------------------------------

/// The cluster, its pool (room for `vms` and the load) and `nodes` nodes.
async fn cluster(s: &SqlStore, vms: usize) -> Result<()> {
    s.create_cluster(&ClusterInput {
        name: CLUSTER.into(),
        network_type: "ip-fabric".into(),
        vm_gateway: Some("10.0.0.1".into()),
        bgp_community: Some("65000:100".into()),
        route_reflectors: vec!["172.16.255.2:65000".into()],
        ..ClusterInput::default()
    })
    .await?;
    // /12s from 10.64.0.0 on: 1,048,576 addresses each.
    let blocks = (vms + 100_000).div_ceil(1 << 20);
    for b in 0..blocks {
        s.add_network(
            CLUSTER,
            &NetworkInput {
                cidr: format!("10.{}.0.0/12", 64 + 16 * b),
                ..NetworkInput::default()
            },
        )
        .await?;
    }
    Ok(())
}

/// Nodes `which` with `per_node` VMs each, VMs in commits of 256.
async fn populate(s: &SqlStore, which: &[usize], per_node: usize) -> Result<()> {
    let start = Instant::now();
    for (k, &i) in which.iter().enumerate() {
        s.add_node(
            CLUSTER,
            &NodeInput {
                name: node_name(i),
                address: node_address(i),
                ..NodeInput::default()
            },
        )
        .await?;
        if k % 1000 == 999 {
            eprintln!("  {} nodes ({:.0} s)", k + 1, start.elapsed().as_secs_f64());
        }
    }
    let mut reqs = Vec::with_capacity(256);
    let mut done = 0usize;
    let total = which.len() * per_node;
    for &i in which {
        for v in 0..per_node {
            reqs.push(VmRequest::new(
                CLUSTER,
                VmInput {
                    name: format!("v{i:05}-{v:03}"),
                    node: node_name(i),
                    ..VmInput::default()
                },
            ));
            if reqs.len() == 256 {
                commit(s, &mut reqs).await?;
                done += 256;
                if done % 100_352 < 256 {
                    eprintln!(
                        "  {done} of {total} VMs ({:.0} s)",
                        start.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
    commit(s, &mut reqs).await
}

async fn commit(s: &SqlStore, reqs: &mut Vec<VmRequest>) -> Result<()> {
    for r in s.create_vms(reqs).await? {
        r?;
    }
    reqs.clear();
    Ok(())
}

/// The installation at `url`, built unless it already has this shape.
async fn installation(url: &str, nodes: &[usize], per_node: usize) -> Result<()> {
    let s = SqlStore::init(url, Arc::new(SystemClock)).await?;
    if let Ok(c) = s.cluster(CLUSTER).await {
        let want = (nodes.len() * per_node) as u64;
        if c.nodes == nodes.len() as u64 && c.vms >= want {
            eprintln!("reusing {url}: {} nodes, {} VMs", c.nodes, c.vms);
            return Ok(());
        }
        return Err(Error::invalid(
            "dir",
            url,
            format!(
                "holds another installation ({} nodes, {} VMs); give an empty --dir or database",
                c.nodes, c.vms
            ),
        ));
    }
    let start = Instant::now();
    eprintln!("building {url}: {} nodes x {per_node} VMs", nodes.len());
    cluster(&s, nodes.len() * per_node).await?;
    populate(&s, nodes, per_node).await?;
    eprintln!("built in {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

// --- measuring ---------------------------------------------------------------

fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(crate::bench::percentile(&v, 0.5)),
        ms(crate::bench::percentile(&v, 0.99)),
        v.last().copied().map_or(0.0, ms),
    )
}

/// A node's plan over the API, `n` times one after the other.
async fn api_plan(base: &str, token: &str, node: &str, n: usize) -> Result<(f64, f64)> {
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/nodes/{node}/plan");
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| Error::storage(format!("plan request: {e}")))?;
        let ok = r.status().is_success();
        let _ = r
            .bytes()
            .await
            .map_err(|e| Error::storage(format!("plan answer: {e}")))?;
        lat.push(t.elapsed());
        if !ok {
            return Err(Error::storage(format!("plan of {node} was refused")));
        }
    }
    let (p50, p99, _) = percentiles(lat);
    Ok((p50, p99))
}

/// `vmfabric WHERE node plan NODE --format json` as a new process, `n`
/// times; `where` is `--db URL` or `--server URL --token T`.
fn cli_plan(place: &[&str], node: &str, n: usize) -> Result<(f64, f64)> {
    let exe = std::env::current_exe().map_err(storage("this program"))?;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let out = Command::new(&exe)
            .args(place)
            .args(["node", "plan", node, "--format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(storage("vmfabric node plan"))?;
        lat.push(t.elapsed());
        if !out.status.success() {
            return Err(Error::storage(format!(
                "vmfabric node plan: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    let (p50, p99, _) = percentiles(lat);
    Ok((p50, p99))
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // After the command name in parentheses: fields 14 and 15.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let u: f64 = f.get(11)?.parse().ok()?;
            let k: f64 = f.get(12)?.parse().ok()?;
            Some((u + k) / ticks)
        })
        .unwrap_or(0.0)
}

/// A counter of the controller's /metrics.
async fn metric(base: &str, token: &str, name: &str) -> f64 {
    let text = match reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// A child process of the benchmark, killed when it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String]) -> Result<Child> {
    let exe = std::env::current_exe().map_err(storage("this program"))?;
    Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Child)
        .map_err(storage("cannot start a benchmark process"))
}

/// Wait for the line `want` on the child's stdout.
fn wait_for(child: &mut Child, want: &str) -> Result<()> {
    let out = child
        .0
        .stdout
        .take()
        .ok_or_else(|| Error::storage("no stdout of a benchmark process"))?;
    let mut lines = BufReader::new(out).lines();
    for line in lines.by_ref() {
        let line = line.map_err(storage("benchmark process"))?;
        if line.trim() == want {
            // Keep reading (and dropping) what it prints later.
            std::thread::spawn(move || for _ in lines {});
            return Ok(());
        }
    }
    Err(Error::storage(format!(
        "a benchmark process ended before saying {want:?}"
    )))
}

// --- the agents' and the load's records -------------------------------------

/// One answer to an agent's long poll.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    node: String,
    at_us: i64,
    /// The answer had the plan the agent already had (its wait ran out).
    same: bool,
    /// VMs the new plan has that the last one had not.
    added: Vec<String>,
}

/// One VM create of the load.
#[derive(Debug, Serialize, Deserialize)]
struct Created {
    name: String,
    node: String,
    sent_us: i64,
    answered_us: i64,
    ok: bool,
}

/// VM names of a plan (its links name their VM).
fn plan_vms(plan: &serde_json::Value) -> BTreeSet<String> {
    plan["links"]
        .as_array()
        .map(|links| {
            links
                .iter()
                .filter_map(|l| l["vm"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// `vmfabric bench scale-agents`: a long poll per node, answers recorded.
pub async fn agents(a: ScaleAgentsArgs) -> Result<Out> {
    vmfabric_client::install_crypto();
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| Error::storage(e.to_string()))?;
    let out = Arc::new(std::sync::Mutex::new(std::io::BufWriter::new(
        std::fs::File::create(&a.out).map_err(storage("agents' record"))?,
    )));
    let first = Arc::new(tokio::sync::Semaphore::new(64));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(a.agents.max(1));
    let mut tasks = Vec::with_capacity(a.agents);
    for i in 0..a.agents {
        let (http, out, first, ready) =
            (http.clone(), out.clone(), first.clone(), ready_tx.clone());
        let url = format!("{}/api/v1/nodes/{}/plan", a.server, node_name(i));
        let token = a.token.clone();
        tasks.push(tokio::spawn(async move {
            let get = |q: String| {
                let req = http.get(format!("{url}{q}")).bearer_auth(&token);
                async move {
                    let r = req.send().await.map_err(|e| e.to_string())?;
                    if !r.status().is_success() {
                        return Err(format!("plan answered {}", r.status()));
                    }
                    r.json::<serde_json::Value>()
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            let plan = {
                let _permit = first.acquire().await.map_err(|e| e.to_string())?;
                get(String::new()).await?
            };
            let mut hash = plan["hash"].as_str().unwrap_or_default().to_string();
            let mut vms = plan_vms(&plan["plan"]);
            let _ = ready.send(()).await;
            loop {
                let got = get(format!("?have={hash}&wait=300")).await?;
                let at_us = now_us();
                let new_hash = got["hash"].as_str().unwrap_or_default().to_string();
                let new_vms = plan_vms(&got["plan"]);
                let answer = Answer {
                    node: node_name(i),
                    at_us,
                    same: new_hash == hash,
                    added: new_vms.difference(&vms).cloned().collect(),
                };
                if let Ok(line) = serde_json::to_string(&answer)
                    && let Ok(mut w) = out.lock()
                {
                    let _ = writeln!(w, "{line}").and_then(|()| w.flush());
                }
                hash = new_hash;
                vms = new_vms;
            }
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        }));
    }
    drop(ready_tx);
    for _ in 0..a.agents {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    // Every agent has its plan and is asking for the next one.
    println!("ready");
    let _ = std::io::stdout().flush();
    for t in tasks {
        match t.await {
            Ok(Err(e)) => eprintln!("an agent stopped: {e}"),
            Err(e) => eprintln!("an agent stopped: {e}"),
            Ok(Ok(())) => {}
        }
    }
    Out::new(&serde_json::json!({}), String::new())
}

/// `vmfabric bench scale-load`: VM creates at a steady rate.
pub async fn load(a: ScaleLoadArgs) -> Result<Out> {
    vmfabric_client::install_crypto();
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| Error::storage(e.to_string()))?;
    let total = (a.rate * a.duration).round() as usize;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / a.rate.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    // A fixed sequence of nodes: the same for every run of a seed.
    let mut x = a.seed | 1;
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tick.tick().await;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut n = usize::try_from(x % a.nodes.max(1) as u64).unwrap_or(0);
        if Some(n) == a.skip && a.nodes > 1 {
            // The node whose plan is measured keeps its size, run after run.
            n = (n + 1) % a.nodes;
        }
        let node = node_name(n);
        let name = format!("load{}-{i}", a.seed % 100_000);
        let req = http
            .post(format!("{}/api/v1/clusters/{CLUSTER}/vms", a.server))
            .bearer_auth(&a.token)
            .json(&VmInput {
                name: name.clone(),
                node: node.clone(),
                ..VmInput::default()
            });
        tasks.push(tokio::spawn(async move {
            let sent_us = now_us();
            let ok = match req.send().await {
                Ok(r) => {
                    let ok = r.status().as_u16() == 201;
                    let _ = r.bytes().await;
                    ok
                }
                Err(_) => false,
            };
            Created {
                name,
                node,
                sent_us,
                answered_us: now_us(),
                ok,
            }
        }));
    }
    let mut w =
        std::io::BufWriter::new(std::fs::File::create(&a.out).map_err(storage("load record"))?);
    for t in tasks {
        let c = t.await.map_err(|e| Error::storage(e.to_string()))?;
        let line = serde_json::to_string(&c).map_err(|e| Error::storage(e.to_string()))?;
        writeln!(w, "{line}").map_err(storage("load record"))?;
    }
    w.flush().map_err(storage("load record"))?;
    Out::new(&serde_json::json!({ "created": total }), String::new())
}

// --- the benchmark ---------------------------------------------------------

#[derive(Debug, Default, Serialize)]
struct Report {
    backend: String,
    nodes: usize,
    vms: usize,
    agents: usize,
    controllers: usize,
    /// A node's plan at full size (ms, p50/p99): over the API, with the
    /// CLI on the database, and with the CLI through the controller.
    plan_api_ms: (f64, f64),
    plan_cli_ms: (f64, f64),
    plan_cli_server_ms: (f64, f64),
    /// The same node in an installation of it alone.
    empty_api_ms: (f64, f64),
    empty_cli_ms: (f64, f64),
    empty_cli_server_ms: (f64, f64),
    /// Full size / empty installation, p50 and p99.
    api_ratio: (f64, f64),
    cli_ratio: (f64, f64),
    cli_server_ratio: (f64, f64),
    creates: usize,
    creates_failed: usize,
    delivered: usize,
    /// Created VMs that no answer to their node's agent ever carried.
    missed: usize,
    /// From the create's answer to the agent's: p50, p99, max (ms).
    latency_ms: (f64, f64, f64),
    /// Answers that carried no new VM (an agent woken for nothing).
    unaffected_answers: usize,
    /// Answers whose wait ran out (not expected within the benchmark).
    timeouts: usize,
    /// The controller's own counts: long polls woken, and woken for a
    /// change that left the plan as it was.
    wakeups: f64,
    wakeups_unchanged: f64,
    /// Controller CPU seconds during the load, per change.
    cpu_ms_per_change: f64,
    /// The agents' controller, before and with every agent waiting.
    rss_before_mib: f64,
    rss_waiting_mib: f64,
    kib_per_agent: f64,
}

pub async fn run(a: ScaleArgs) -> Result<Out> {
    vmfabric_client::install_crypto();
    if a.vms_per_node == 0 || a.vms_per_node > 999 || a.nodes == 0 || a.nodes > 60_000 {
        return Err(Error::invalid(
            "nodes",
            format!("{} x {}", a.nodes, a.vms_per_node),
            "1 to 60000 nodes with 1 to 999 VMs each",
        ));
    }
    let agents = a.agents.unwrap_or(a.nodes).min(a.nodes);
    let measured = 42 % a.nodes;
    let scratch = std::env::temp_dir().join(format!("vmfabric-bench-scale-{}", std::process::id()));
    let dir = a.dir.clone().unwrap_or_else(|| scratch.clone());
    std::fs::create_dir_all(&dir).map_err(storage("benchmark folder"))?;
    let result = run_in(&a, &dir, agents, measured).await;
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let r = result?;
    let text = table(&r);
    let failed = r.missed > 0
        || r.unaffected_answers > 0
        || r.timeouts > 0
        || r.creates_failed > 0
        || r.delivered != r.creates - r.creates_failed;
    if a.check && failed {
        return Err(Error::storage(format!(
            "the agents were not answered exactly: {}",
            serde_json::to_string(&r).unwrap_or_default()
        )));
    }
    Out::new(&r, text)
}

async fn run_in(a: &ScaleArgs, dir: &Path, agents: usize, measured: usize) -> Result<Report> {
    let tag = format!("{}x{}", a.nodes, a.vms_per_node);
    let (backend, full, empty) = match &a.postgres {
        Some(admin) => {
            let full = database(
                admin,
                &format!("vmf_scale_{}_{}", a.nodes, a.vms_per_node),
                a.reuse,
            )
            .await?;
            let empty = database(
                admin,
                &format!("vmf_scale_{}_{}_one", a.nodes, a.vms_per_node),
                a.reuse,
            )
            .await?;
            ("postgres", full, empty)
        }
        None => {
            let file = |n: &str| -> Result<String> {
                let p: PathBuf = dir.join(n);
                if !a.reuse {
                    for ext in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
                    }
                }
                Ok(format!("sqlite://{}?mode=rwc", p.display()))
            };
            (
                "sqlite",
                file(&format!("scale-{tag}.db"))?,
                file(&format!("scale-{tag}-one.db"))?,
            )
        }
    };
    let all: Vec<usize> = (0..a.nodes).collect();
    installation(&full, &all, a.vms_per_node).await?;
    installation(&empty, &[measured], a.vms_per_node).await?;
    let mut r = Report {
        backend: backend.into(),
        nodes: a.nodes,
        vms: a.nodes * a.vms_per_node,
        agents,
        controllers: a.controllers,
        ..Report::default()
    };
    let node = node_name(measured);

    // A node's plan, in the empty installation and in the full one.
    {
        let token = admin_token(&empty).await?;
        let (_serve, base) = start_serve(&empty)?;
        let base = format!("http://{}", base.trim_start_matches("http://"));
        api_plan(&base, &token, &node, 10).await?;
        r.empty_api_ms = api_plan(&base, &token, &node, a.plan_samples).await?;
        r.empty_cli_server_ms = cli_plan(
            &["--server", &base, "--token", &token],
            &node,
            a.cli_samples,
        )?;
    }
    r.empty_cli_ms = cli_plan(&["--db", &empty], &node, a.cli_samples)?;
    let token = admin_token(&full).await?;
    let (serve_a, base_a) = start_serve(&full)?;
    let mut serves: Vec<Serve> = vec![serve_a];
    let base_a = format!("http://{}", base_a.trim_start_matches("http://"));
    api_plan(&base_a, &token, &node, 10).await?;
    r.plan_api_ms = api_plan(&base_a, &token, &node, a.plan_samples).await?;
    r.plan_cli_ms = cli_plan(&["--db", &full], &node, a.cli_samples)?;
    r.plan_cli_server_ms = cli_plan(
        &["--server", &base_a, "--token", &token],
        &node,
        a.cli_samples,
    )?;
    let ratio = |x: (f64, f64), y: (f64, f64)| (x.0 / y.0, x.1 / y.1);
    r.api_ratio = ratio(r.plan_api_ms, r.empty_api_ms);
    r.cli_ratio = ratio(r.plan_cli_ms, r.empty_cli_ms);
    r.cli_server_ratio = ratio(r.plan_cli_server_ms, r.empty_cli_server_ms);
    eprintln!(
        "plan of {node}: API {:.2}/{:.2} ms (alone {:.2}/{:.2}), CLI --db {:.2}/{:.2} ms (alone {:.2}/{:.2}), CLI --server {:.2}/{:.2} ms (alone {:.2}/{:.2})",
        r.plan_api_ms.0,
        r.plan_api_ms.1,
        r.empty_api_ms.0,
        r.empty_api_ms.1,
        r.plan_cli_ms.0,
        r.plan_cli_ms.1,
        r.empty_cli_ms.0,
        r.empty_cli_ms.1,
        r.plan_cli_server_ms.0,
        r.plan_cli_server_ms.1,
        r.empty_cli_server_ms.0,
        r.empty_cli_server_ms.1
    );

    // The load goes through a second controller when there are two.
    let base_b = if a.controllers > 1 {
        let (serve_b, base_b) = start_serve(&full)?;
        serves.push(serve_b);
        format!("http://{}", base_b.trim_start_matches("http://"))
    } else {
        base_a.clone()
    };
    let pid = serves[0].pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(pid);

    // Every agent waits.
    let answers_file = dir.join(format!("answers-{}.jsonl", std::process::id()));
    let started = Instant::now();
    let mut swarm = spawn(&[
        "bench".into(),
        "scale-agents".into(),
        "--server".into(),
        base_a.clone(),
        "--token".into(),
        token.clone(),
        "--agents".into(),
        agents.to_string(),
        "--out".into(),
        answers_file.display().to_string(),
    ])?;
    wait_for(&mut swarm, "ready")?;
    eprintln!(
        "{agents} agents waiting after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_waiting = rss_kib(pid);
    r.rss_before_mib = rss_before as f64 / 1024.0;
    r.rss_waiting_mib = rss_waiting as f64 / 1024.0;
    r.kib_per_agent = rss_waiting.saturating_sub(rss_before) as f64 / agents.max(1) as f64;
    let wakeups0 = metric(&base_a, &token, "vmfabric_plan_wakeups_total").await;
    let unchanged0 = metric(&base_a, &token, "vmfabric_plan_wakeups_unchanged_total").await;

    // The load.
    let load_file = dir.join(format!("load-{}.jsonl", std::process::id()));
    let cpu0 = cpu_seconds(pid);
    let mut load = spawn(&[
        "bench".into(),
        "scale-load".into(),
        "--server".into(),
        base_b,
        "--token".into(),
        token.clone(),
        "--nodes".into(),
        agents.to_string(),
        "--rate".into(),
        a.rate.to_string(),
        "--duration".into(),
        a.duration.to_string(),
        "--seed".into(),
        (now_us() as u64 % 1_000_000_007).to_string(),
        "--skip".into(),
        measured.to_string(),
        "--out".into(),
        load_file.display().to_string(),
    ])?;
    let status = tokio::task::spawn_blocking(move || load.0.wait())
        .await
        .map_err(|e| Error::storage(e.to_string()))?
        .map_err(storage("load process"))?;
    if !status.success() {
        return Err(Error::storage("the load process failed"));
    }
    // The last answers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_seconds(pid) - cpu0;
    r.wakeups = metric(&base_a, &token, "vmfabric_plan_wakeups_total").await - wakeups0;
    r.wakeups_unchanged =
        metric(&base_a, &token, "vmfabric_plan_wakeups_unchanged_total").await - unchanged0;
    drop(swarm);

    // Who was answered with what.
    let created: Vec<Created> = read_lines(&load_file)?;
    let answers: Vec<Answer> = read_lines(&answers_file)?;
    let _ = std::fs::remove_file(&load_file);
    let _ = std::fs::remove_file(&answers_file);
    r.creates = created.len();
    r.creates_failed = created.iter().filter(|c| !c.ok).count();
    let mut seen: HashMap<&str, i64> = HashMap::new();
    for ans in &answers {
        if ans.same {
            r.timeouts += 1;
        } else if ans.added.is_empty() {
            r.unaffected_answers += 1;
        }
        for v in &ans.added {
            seen.entry(v.as_str()).or_insert(ans.at_us);
        }
    }
    let mut lat = Vec::new();
    for c in created.iter().filter(|c| c.ok) {
        match seen.get(c.name.as_str()) {
            Some(at) => {
                r.delivered += 1;
                lat.push(Duration::from_micros(
                    u64::try_from((at - c.answered_us).max(0)).unwrap_or(0),
                ));
            }
            None => r.missed += 1,
        }
    }
    r.latency_ms = percentiles(lat);
    r.cpu_ms_per_change = cpu * 1e3 / (r.creates - r.creates_failed).max(1) as f64;
    drop(serves);
    Ok(r)
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(storage("benchmark record"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| Error::storage(format!("benchmark record {}: {e}", path.display())))
        })
        .collect()
}

/// A database of this benchmark on the PostgreSQL server of `admin`.
async fn database(admin: &str, name: &str, reuse: bool) -> Result<String> {
    if reuse {
        return match admin.rsplit_once('/') {
            Some((base, _)) => Ok(format!("{base}/{name}")),
            None => Err(Error::invalid("postgres", admin, "a postgres:// URL")),
        };
    }
    pg_database(admin, name).await
}

async fn admin_token(url: &str) -> Result<String> {
    let s = SqlStore::open(url, Arc::new(SystemClock)).await?;
    Ok(s.create_token(&TokenInput {
        name: "bench scale".into(),
        role: "admin".into(),
        node: None,
    })
    .await?
    .secret)
}

fn table(r: &Report) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, v: String| {
        rows.push((what.to_string(), v));
    };
    add(
        "installation",
        format!(
            "{} nodes, {} VMs, {} agents, {} controller(s), {}",
            r.nodes, r.vms, r.agents, r.controllers, r.backend
        ),
    );
    add(
        "plan of a 100-VM node, API p50 / p99",
        format!(
            "{:.2} / {:.2} ms (alone {:.2} / {:.2} ms, ratio {:.2} / {:.2})",
            r.plan_api_ms.0,
            r.plan_api_ms.1,
            r.empty_api_ms.0,
            r.empty_api_ms.1,
            r.api_ratio.0,
            r.api_ratio.1
        ),
    );
    add(
        "plan of a 100-VM node, CLI --db p50 / p99",
        format!(
            "{:.2} / {:.2} ms (alone {:.2} / {:.2} ms, ratio {:.2} / {:.2})",
            r.plan_cli_ms.0,
            r.plan_cli_ms.1,
            r.empty_cli_ms.0,
            r.empty_cli_ms.1,
            r.cli_ratio.0,
            r.cli_ratio.1
        ),
    );
    add(
        "plan of a 100-VM node, CLI --server p50 / p99",
        format!(
            "{:.2} / {:.2} ms (alone {:.2} / {:.2} ms, ratio {:.2} / {:.2})",
            r.plan_cli_server_ms.0,
            r.plan_cli_server_ms.1,
            r.empty_cli_server_ms.0,
            r.empty_cli_server_ms.1,
            r.cli_server_ratio.0,
            r.cli_server_ratio.1
        ),
    );
    add(
        "VM creates (failed)",
        format!("{} ({})", r.creates, r.creates_failed),
    );
    add(
        "delivered to their agent / missed",
        format!("{} / {}", r.delivered, r.missed),
    );
    add(
        "create answered -> agent answered p50 / p99 / max",
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            r.latency_ms.0, r.latency_ms.1, r.latency_ms.2
        ),
    );
    add(
        "answers to unaffected agents",
        r.unaffected_answers.to_string(),
    );
    add("answers whose wait ran out", r.timeouts.to_string());
    add(
        "long polls woken (unchanged plan)",
        format!("{} ({})", r.wakeups, r.wakeups_unchanged),
    );
    add(
        "controller CPU per change",
        format!("{:.2} ms", r.cpu_ms_per_change),
    );
    add(
        "controller RSS: before agents / all waiting",
        format!(
            "{:.0} / {:.0} MiB ({:.1} KiB per waiting agent)",
            r.rss_before_mib, r.rss_waiting_mib, r.kib_per_agent
        ),
    );
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<w$}  {v}\n"))
        .collect()
}
