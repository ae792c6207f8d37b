//! Crash safety: `kill -9` in the middle of a loop of allocations loses
//! nothing that was reported as done and leaves no half-made object.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use common::{Env, FABRIC_CLUSTER};

/// Start `vm import`, feed it VMs, kill it after `acks` acknowledgements;
/// returns the acknowledged VMs with their addresses.
fn import_and_kill(e: &Env, batch: usize, first: usize, acks: usize) -> BTreeMap<String, String> {
    let mut child = e
        .cmd()
        .args([
            "--output",
            "json",
            "vm",
            "import",
            "--batch",
            &batch.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in first..first + 20_000 {
            let node = if i % 2 == 0 { "node1" } else { "node2" };
            let line = format!("{{\"cluster\":\"fab\",\"name\":\"c{i}\",\"node\":\"{node}\"}}\n");
            if stdin.write_all(line.as_bytes()).is_err() {
                return; // killed
            }
        }
    });
    let mut acked = BTreeMap::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked.len() < acks {
        let line = lines.next().expect("import ended early").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let vm = &v["ok"];
        assert!(!vm.is_null(), "import failed: {line}");
        acked.insert(
            vm["name"].as_str().unwrap().to_string(),
            common::first_ip(vm),
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(lines);
    writer.join().unwrap();
    acked
}

#[test]
fn kill_9_during_allocations_loses_nothing_acknowledged() {
    let e = Env::new();
    e.ok(FABRIC_CLUSTER);
    e.ok(&["network", "add", "fab", "198.18.0.0/16"]);
    e.ok(&["node", "add", "fab", "node1", "--address", "172.16.0.11"]);
    e.ok(&["node", "add", "fab", "node2", "--address", "172.16.0.12"]);
    let mut all = BTreeMap::new();
    let mut next = 0;
    // Different batch sizes and kill points: one VM per commit, and group commits.
    for (round, (batch, acks)) in [(1, 37), (1, 211), (16, 160), (64, 448), (1, 5)]
        .into_iter()
        .enumerate()
    {
        let acked = import_and_kill(&e, batch, next, acks);
        assert!(acked.len() >= acks, "round {round}");
        next += 20_000;
        all.extend(acked);
        // Reopen: every invariant holds (no half-made VM, counters right).
        let check = e.ok(&["check"]);
        assert_eq!(
            check["problems"].as_array().unwrap().len(),
            0,
            "round {round}: {check}"
        );
        // Everything acknowledged is there, with the acknowledged address.
        let vms = e.ok(&["vm", "list"]);
        let stored: BTreeMap<String, String> = vms
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_string(), common::first_ip(v)))
            .collect();
        for (name, ip) in &all {
            assert_eq!(stored.get(name), Some(ip), "round {round}: {name} lost");
        }
        // Every stored VM is whole: one NIC with one address, no address twice.
        for v in vms.as_array().unwrap() {
            assert_eq!(v["nics"].as_array().unwrap().len(), 1, "{v}");
            assert_eq!(
                v["nics"][0]["addresses"].as_array().unwrap().len(),
                1,
                "{v}"
            );
        }
        let mut ips: Vec<&String> = stored.values().collect();
        ips.sort();
        ips.dedup();
        assert_eq!(ips.len(), stored.len(), "an address was given twice");
        let held = e.ok(&["ip", "list"]);
        assert_eq!(
            held.as_array().unwrap().len(),
            stored.len(),
            "leaked or lost addresses"
        );
    }
}

#[test]
fn two_processes_allocating_at_once_never_share_an_address() {
    let e = Env::new();
    e.ok(FABRIC_CLUSTER);
    e.ok(&["network", "add", "fab", "198.51.100.0/24"]);
    e.ok(&["network", "add", "fab", "203.0.113.0/24"]);
    e.ok(&["node", "add", "fab", "node1", "--address", "172.16.0.11"]);
    let spawn = |prefix: &str, batch: &str| {
        let mut child = e
            .cmd()
            .args(["--output", "json", "vm", "import", "--batch", batch])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let lines: String = (0..250)
            .map(|i| {
                format!("{{\"cluster\":\"fab\",\"name\":\"{prefix}{i}\",\"node\":\"node1\"}}\n")
            })
            .collect();
        std::thread::spawn(move || stdin.write_all(lines.as_bytes()));
        child
    };
    let a = spawn("a", "1");
    let b = spawn("b", "7");
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.lines()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|v| !v["ok"].is_null()))
                .count(),
            250,
            "{text}"
        );
    }
    let held = e.ok(&["ip", "list"]);
    let mut ips: Vec<&str> = held
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 500);
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 500);
    let check = e.ok(&["check"]);
    assert_eq!(check["problems"].as_array().unwrap().len(), 0, "{check}");
}
