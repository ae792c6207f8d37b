//! Many agents long-polling one controller: a change answers exactly the
//! agents whose plan it changes, and no other, across controllers on one
//! PostgreSQL and across a controller restart.
//!
//! The first two tests are a small `vmfabric bench scale` (500 agents over
//! 50,000 VMs; 200 agents, two controllers on PostgreSQL): real processes,
//! real HTTP connections. They assert correctness only; the numbers of the
//! full-size run are in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::controller::{http, serve, token};
use common::*;
use serde_json::{Value, json};

fn bench_scale(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .args(["-o", "json", "bench", "scale", "--dir"])
        .arg(dir.path())
        .args(args)
        .env_remove("VMFABRIC_DB")
        .output()
        .unwrap();
    let r = parse(out);
    assert_eq!(r.code, 0, "bench scale failed: {}\n{}", r.stderr, r.stdout);
    eprintln!("{}", serde_json::to_string_pretty(&r.json).unwrap());
    r.json
}

/// Every create reached its node's agent and nothing else was answered.
fn exactly_the_affected_agents(r: &Value, creates: u64) {
    assert_eq!(r["creates"], creates, "{r}");
    assert_eq!(r["creates_failed"], 0, "{r}");
    assert_eq!(
        r["delivered"], creates,
        "every change reached its agent: {r}"
    );
    assert_eq!(r["missed"], 0, "{r}");
    assert_eq!(
        r["unaffected_answers"], 0,
        "no agent was answered for nothing: {r}"
    );
    assert_eq!(r["timeouts"], 0, "{r}");
    // The controller woke at most one long poll per change (one VM, one
    // node), and each woken poll found its plan changed. Fewer wakeups
    // than changes happen when a node's agent polls again after a change
    // already committed (a loaded machine): that poll is answered at once,
    // without waiting, and `delivered` above still counts it.
    let wakeups = r["wakeups"].as_f64().unwrap_or(f64::MAX);
    assert!(wakeups <= creates as f64, "{r}");
    assert!(
        wakeups >= creates as f64 * 0.9,
        "most changes wake a waiting poll: {r}"
    );
    assert_eq!(r["wakeups_unchanged"].as_f64(), Some(0.0), "{r}");
}

#[test]
fn five_hundred_agents_each_hear_only_their_own_changes() {
    let r = bench_scale(&[
        "--nodes",
        "500",
        "--vms-per-node",
        "100",
        "--rate",
        "50",
        "--duration",
        "4",
        "--plan-samples",
        "10",
        "--cli-samples",
        "2",
        "--check",
    ]);
    assert_eq!(r["vms"], 50_000);
    assert_eq!(r["agents"], 500);
    exactly_the_affected_agents(&r, 200);
}

fn admin_url() -> String {
    std::env::var("VMFABRIC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://vmfabric:vmfabric@127.0.0.1:5432/postgres".into())
}

/// Drops the benchmark's databases however the test ends.
struct DropScaleDatabases(&'static [&'static str]);

impl Drop for DropScaleDatabases {
    fn drop(&mut self) {
        for db in self.0 {
            let _ = Command::new("psql")
                .arg(admin_url())
                .arg("-qc")
                .arg(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .output();
        }
    }
}

#[test]
fn a_change_through_one_controller_reaches_agents_waiting_on_another() {
    let _cleanup = DropScaleDatabases(&["vmf_scale_200_50", "vmf_scale_200_50_one"]);
    let probe = Command::new("psql")
        .arg(admin_url())
        .arg("-qc")
        .arg("SELECT 1")
        .output()
        .expect("this test needs psql and a PostgreSQL server: apt-get install postgresql postgresql-client (scripts/test starts it)");
    assert!(
        probe.status.success(),
        "no PostgreSQL at {}: scripts/test installs and starts it",
        admin_url()
    );
    // The agents wait on the first controller; every VM is created
    // through the second.
    let admin = admin_url();
    let r = bench_scale(&[
        "--postgres",
        &admin,
        "--controllers",
        "2",
        "--nodes",
        "200",
        "--vms-per-node",
        "50",
        "--rate",
        "25",
        "--duration",
        "4",
        "--plan-samples",
        "10",
        "--cli-samples",
        "2",
        "--check",
    ]);
    assert_eq!(r["controllers"], 2);
    exactly_the_affected_agents(&r, 100);
    // The controllers share nothing but the database: the first learns
    // of the second's commits from the change log it polls every 20 ms.
    let p99 = r["latency_ms"][1].as_f64().unwrap();
    assert!(
        p99 < 2000.0,
        "p99 {p99} ms from commit to the other controller's agent"
    );
}

/// node1's plan: (hash, answer, how long the request took).
fn plan(api: &str, token: &str, query: &str) -> (String, Value, Duration) {
    let t = Instant::now();
    let (s, p, _) = http(
        "GET",
        &format!("{api}/nodes/node1/plan{query}"),
        Some(token),
        &[],
        None,
    );
    assert_eq!(s, 200, "{p}");
    (p["hash"].as_str().unwrap().to_string(), p, t.elapsed())
}

#[test]
fn an_agent_that_comes_back_after_a_restart_gets_what_changed_meanwhile() {
    let env = Env::new();
    env.seed_world();
    let db = env.db.to_string_lossy().to_string();
    let agent = token(&db, "node", Some("node1"));
    let op = token(&db, "operator", None);
    let mut srv = serve(&db, &[]);
    let api = format!("{}/api/v1", srv.url);
    let (had, _, _) = plan(&api, &agent, "");
    // The controller dies; a VM of node1 is created on the database.
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    env.ok(&["vm", "create", "fab", "late1", "--node", "node1"]);
    let srv = serve(&db, &[]);
    let api = format!("{}/api/v1", srv.url);
    // The agent asks again with the hash it had: the answer is at once.
    let (now, p, took) = plan(&api, &agent, &format!("?have={had}&wait=30"));
    assert_ne!(now, had);
    assert!(p["plan"].to_string().contains("late1"), "{p}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // A change on another node does not answer node1's agent; one on
    // node1 does, at once.
    let api2 = api.clone();
    let agent2 = agent.clone();
    let have = now.clone();
    let waiter = std::thread::spawn(move || plan(&api2, &agent2, &format!("?have={have}&wait=20")));
    std::thread::sleep(Duration::from_millis(300));
    let create = |name: &str, node: &str| {
        let (s, p, _) = http(
            "POST",
            &format!("{api}/clusters/fab/vms"),
            Some(&op),
            &[],
            Some(&json!({"name": name, "node": node})),
        );
        assert_eq!(s, 201, "{p}");
    };
    create("other1", "node2");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !waiter.is_finished(),
        "node1's agent was answered for node2's change"
    );
    let t = Instant::now();
    create("mine1", "node1");
    let (after, p, _) = waiter.join().unwrap();
    assert_ne!(after, now);
    assert!(p["plan"].to_string().contains("mine1"), "{p}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The controller counts what it woke: node1's poll, once; none for
    // node2 (nobody waits there).
    let (_, _, metrics) = http("GET", &format!("{}/metrics", srv.url), Some(&op), &[], None);
    assert!(
        metrics.contains("vmfabric_plan_wakeups_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vmfabric_plan_wakeups_unchanged_total 0\n"),
        "{metrics}"
    );
}
