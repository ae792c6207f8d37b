//! Prometheus metrics in the text exposition format: API latency per
//! route, allocations, pool usage, agents. Written by hand: a few counters
//! do not need a metrics framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vmfabric_model::AgentStatus;
use vmfabric_model::view::Usage;

use crate::plan_watch::PlanWatch;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// (method, route, status) → latency.
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    pub vms_created: AtomicU64,
    pub vms_deleted: AtomicU64,
    pub batches: AtomicU64,
    /// Requests for a node's plan (each long poll counts once).
    pub plan_requests: AtomicU64,
    /// Long polls woken by a change that left their plan as it was.
    pub plan_wakeups_unchanged: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let h = m
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += s;
    }

    /// The exposition text, with the store's usage and agents' reports.
    pub fn render(
        &self,
        usage: &[Usage],
        agents: &[AgentStatus],
        watch: &PlanWatch,
        now_us: i64,
    ) -> String {
        let mut o = String::new();
        o.push_str("# HELP vmfabric_api_request_duration_seconds API request latency.\n");
        o.push_str("# TYPE vmfabric_api_request_duration_seconds histogram\n");
        let reqs = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for ((method, route, status), h) in &reqs {
            let l = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                esc(route)
            );
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "vmfabric_api_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "vmfabric_api_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "vmfabric_api_request_duration_seconds_sum{{{l}}} {}",
                h.sum
            );
            let _ = writeln!(
                o,
                "vmfabric_api_request_duration_seconds_count{{{l}}} {}",
                h.count
            );
        }
        counter(
            &mut o,
            "vmfabric_vms_created_total",
            "VMs created through this controller.",
            self.vms_created.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "vmfabric_vms_deleted_total",
            "VMs deleted through this controller.",
            self.vms_deleted.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "vmfabric_create_batches_total",
            "Commits of VM creations (each holds one or more VMs).",
            self.batches.load(Ordering::Relaxed),
        );

        o.push_str(
            "# HELP vmfabric_pool_addresses Addresses of each network and node range, by state.\n",
        );
        o.push_str("# TYPE vmfabric_pool_addresses gauge\n");
        for u in usage {
            let l = format!(
                "cluster=\"{}\",node=\"{}\",block=\"{}\",role=\"{}\",family=\"{}\"",
                esc(&u.cluster),
                esc(u.node.as_deref().unwrap_or("")),
                esc(&u.block),
                u.role.as_str(),
                u.family
            );
            for (state, n) in [
                ("total", u.total),
                ("system", u.system),
                ("used", u.used),
                ("reserved", u.reserved),
                ("cooling", u.cooling),
                ("free", u.free),
            ] {
                // Floats: a /48 holds more than a u64 counts.
                let _ = writeln!(
                    o,
                    "vmfabric_pool_addresses{{{l},state=\"{state}\"}} {}",
                    n as f64
                );
            }
        }

        let waiting = watch.waiting_nodes();
        o.push_str(
            "# HELP vmfabric_agents_connected Agents waiting on this controller for their plan.\n",
        );
        o.push_str("# TYPE vmfabric_agents_connected gauge\n");
        let _ = writeln!(o, "vmfabric_agents_connected {}", waiting.len());
        o.push_str("# HELP vmfabric_plan_waiters Long polls of plans waiting now.\n");
        o.push_str("# TYPE vmfabric_plan_waiters gauge\n");
        let _ = writeln!(o, "vmfabric_plan_waiters {}", watch.waiters());
        counter(
            &mut o,
            "vmfabric_plan_requests_total",
            "Requests for a node's plan (a long poll counts once).",
            self.plan_requests.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "vmfabric_plan_wakeups_total",
            "Long polls woken because a change reached their node.",
            watch.wakeups.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "vmfabric_plan_wakeups_unchanged_total",
            "Long polls woken by a change that left their plan as it was.",
            self.plan_wakeups_unchanged.load(Ordering::Relaxed),
        );
        counter(
            &mut o,
            "vmfabric_changes_read_total",
            "Changes read from the store's change log.",
            watch.changes_read.load(Ordering::Relaxed),
        );
        per_agent(
            &mut o,
            agents,
            "vmfabric_agent_connected",
            "Whether the node's agent waits on this controller now.",
            |a| u8::from(waiting.contains(&a.node)).to_string(),
        );
        per_agent(
            &mut o,
            agents,
            "vmfabric_agent_last_report_age_seconds",
            "Seconds since the node's agent last reported.",
            |a| ((now_us - a.at.0) as f64 / 1e6).to_string(),
        );
        per_agent(
            &mut o,
            agents,
            "vmfabric_agent_last_reconcile_ok",
            "Whether the node's last reconcile applied every change.",
            |a| {
                let failures = a.report["failures"].as_array().map_or(0, Vec::len);
                u8::from(failures == 0 && a.report["error"].is_null()).to_string()
            },
        );
        per_agent(
            &mut o,
            agents,
            "vmfabric_agent_last_reconcile_changes",
            "Changes the node's last reconcile made.",
            |a| {
                a.report["changes"]
                    .as_array()
                    .map_or(0, Vec::len)
                    .to_string()
            },
        );
        o
    }
}

/// A gauge with one sample per node agent.
fn per_agent(
    o: &mut String,
    agents: &[AgentStatus],
    name: &str,
    help: &str,
    value: impl Fn(&AgentStatus) -> String,
) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
    for a in agents {
        let _ = writeln!(o, "{name}{{node=\"{}\"}} {}", esc(&a.node), value(a));
    }
}

fn counter(o: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

/// Label values escape backslash, quote and newline.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
