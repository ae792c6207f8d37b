//! `vmfabric agent`: run the node agent, or show what it last did.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use vmfabric_agent::daemons::{FrrSettings, NdppdSettings};
use vmfabric_agent::netlink::Netlink;
use vmfabric_agent::watch::{self, LinkWatch};
use vmfabric_agent::{Agent, Report, Settings, State};
use vmfabric_model::{Error, Result};
use vmfabric_plan::{NodePlan, ROUTE_PROTOCOL, build};
use vmfabric_store::Store;

use crate::Out;
use crate::args::{AgentArgs, AgentCmd, AgentDaemons, Cli};

fn settings(d: &AgentDaemons) -> Settings {
    Settings {
        state_dir: d.state_dir.clone(),
        frr: FrrSettings {
            conf_dir: d.frr_dir.clone(),
            vty_socket: d.frr_socket.clone(),
            reload: d.frr_reload.clone(),
            ..FrrSettings::default()
        },
        ndppd: NdppdSettings {
            conf: d.ndppd_conf.clone(),
            pidfile: d.ndppd_pid.clone(),
            ..NdppdSettings::default()
        },
        nft: "nft".into(),
    }
}

fn agent_error(e: vmfabric_agent::Error) -> Error {
    use vmfabric_agent::Error as A;
    match e {
        A::Prerequisite(m) | A::Conflict(m) => Error::conflict("node", "", m),
        other => Error::storage(other),
    }
}

pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let verb = if r.dry_run { "would change" } else { "changed" };
    let _ = writeln!(
        s,
        "node {}: {} {} kernel objects{}{}{} in {} ms, {} writes",
        r.node,
        verb,
        r.changes.len(),
        if r.firewall_changed {
            ", the firewall"
        } else {
            ""
        },
        if r.frr_changed { ", FRR" } else { "" },
        if r.ndppd_changed { ", ndppd" } else { "" },
        r.micros / 1000,
        r.writes
    );
    for c in &r.changes {
        let _ = writeln!(s, "  {c}");
    }
    if !r.guests_off.is_empty() {
        let _ = writeln!(
            s,
            "  guests off (no carrier, routes withheld): {}",
            r.guests_off.join(" ")
        );
    }
    for f in &r.failures {
        let _ = writeln!(s, "  FAILED {f}");
    }
    for sess in &r.sessions {
        let _ = writeln!(
            s,
            "  bgp {} {} ({} routes sent)",
            sess.peer, sess.state, sess.prefixes_sent
        );
    }
    if r.ndppd_running {
        s.push_str("  ndppd running\n");
    }
    for (rule, n) in &r.drops {
        if *n > 0 {
            let _ = writeln!(s, "  dropped {n} packets: {rule}");
        }
    }
    s
}

/// The plan of this round: from a file, or built from the database.
async fn plan(db: Option<&str>, args: &crate::args::AgentRun, node: &str) -> Result<NodePlan> {
    if let Some(path) = &args.plan {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid("plan", path.display(), format!("cannot read: {e}")))?;
        let p: NodePlan = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(
                "plan",
                path.display(),
                format!("not a plan of `node plan --format json`: {e}"),
            )
        })?;
        // Checked by the controller's rules before it reaches the kernel:
        // its names go into nft rulesets, netlink and sysctl paths.
        p.check().map_err(|e| match e {
            Error::Invalid { field, value, rule } => {
                Error::invalid(&field, value, format!("{rule} (in {})", path.display()))
            }
            other => other,
        })?;
        if p.node != node {
            return Err(Error::invalid(
                "plan",
                path.display(),
                format!("the file holds the plan of node {}, not {node}", p.node),
            ));
        }
        return Ok(p);
    }
    let store = crate::commands::open(db, false).await?;
    Ok(build(&store.plan_input(node).await?))
}

pub async fn run(cli: &Cli, a: AgentArgs, json: bool) -> Result<Out> {
    let db = cli.db.as_deref();
    if let Some(AgentCmd::Reports) = a.status {
        let store = crate::commands::open_store(cli).await?;
        let now = store.now();
        let rows =
            move |a: &[vmfabric_model::AgentStatus]| crate::render::agent_reports_rows(a, now);
        let text = crate::listing::Text {
            headers: crate::render::AGENT_REPORTS_HEADERS,
            rows: &rows,
            empty: None,
        };
        let s = store.as_ref();
        return crate::listing::stream(json, text, |p| async move { s.agent_statuses(&p).await })
            .await;
    }
    if let Some(AgentCmd::Status { daemons }) = a.status {
        let settings = settings(&daemons);
        let state = State::load(&settings).map_err(agent_error)?;
        let Some(mut last) = state.last else {
            return Err(Error::not_found(
                "agent report",
                settings.state_dir.display(),
            ));
        };
        last.sessions = settings.frr.sessions().await;
        last.ndppd_running = settings.ndppd.running();
        return Out::new(&last, text(&last));
    }
    let args = a.run;
    let node = args
        .node
        .clone()
        .ok_or_else(|| Error::invalid("node", "", "the agent needs --node NODE"))?;
    if !args.dry_run {
        vmfabric_agent::check_root().map_err(agent_error)?;
    }
    let agent = Agent {
        dataplane: Netlink::connect(ROUTE_PROTOCOL).map_err(agent_error)?,
        settings: settings(&args.daemons),
    };
    if let Some(url) = &cli.server {
        if args.plan.is_some() || db.is_some() {
            return Err(Error::invalid(
                "server",
                url,
                "the plan comes from one place: --server, --db or --plan",
            ));
        }
        let client = crate::commands::remote(cli, url)?;
        return over_network(&agent, &client, &node, &args, json).await;
    }
    let mut watch = (!args.once && !args.dry_run)
        .then(|| link_watch(&node))
        .flatten();
    let mut vm_links = BTreeSet::new();
    loop {
        let round = async {
            let p = plan(db, &args, &node).await?;
            vm_links = watch::vm_links(&p);
            agent.reconcile(&p, args.dry_run).await.map_err(agent_error)
        }
        .await;
        if args.once || args.dry_run {
            // One round: its report is the command's output.
            return last_round(round);
        }
        log_round(&node, &round, None);
        let line = match &round {
            Ok(r) if json => serde_json::to_string(r).unwrap_or_default(),
            Ok(r) => text(r),
            Err(e) => format!("error: {e}"),
        };
        print_line(&line);
        let interval = Duration::from_secs_f64(args.interval.max(0.05));
        let wake = match watch.as_mut() {
            Some(w) => {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => Ok(false),
                    c = w.changed(&vm_links) => c.map(|()| true),
                }
            }
            None => {
                tokio::time::sleep(interval).await;
                Ok(false)
            }
        };
        settle(&mut watch, &vm_links, wake, &node).await;
    }
}

/// How long the agent lets a burst of carrier changes (a host starting or
/// stopping many guests, LXD moving a veth peer and raising it) gather
/// before one round handles them all; also the least time between two
/// rounds that link changes cause, so a flapping link costs at most one
/// round per this much time.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Subscribe to link notifications; without them the agent still works,
/// at its interval.
fn link_watch(node: &str) -> Option<LinkWatch> {
    match LinkWatch::start() {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(node, error = %e, "guests starting and stopping are seen only at the interval");
            None
        }
    }
}

/// After a wake by a carrier change (`Ok(true)`): wait out the burst and
/// take in what it reported. A subscription that ended is dropped (the
/// interval remains).
async fn settle(
    watch: &mut Option<LinkWatch>,
    vm_links: &BTreeSet<String>,
    wake: std::result::Result<bool, vmfabric_agent::Error>,
    node: &str,
) {
    match wake {
        Ok(true) => {
            tracing::info!(node, "a guest started or stopped: reconciling now");
            tokio::time::sleep(DEBOUNCE).await;
            if let Some(w) = watch.as_mut() {
                w.drain(vm_links);
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(node, error = %e, "guests starting and stopping are seen only at the interval from now on");
            *watch = None;
        }
    }
}

/// One log line per round: how many changes and failures, how long.
fn log_round(node: &str, round: &Result<Report>, revision: Option<i64>) {
    let revision = revision.unwrap_or(-1);
    match round {
        Ok(r) if r.failures.is_empty() => tracing::info!(
            node,
            revision,
            changes = r.changes.len(),
            writes = r.writes,
            micros = r.micros,
            "round"
        ),
        Ok(r) => tracing::warn!(
            node,
            revision,
            changes = r.changes.len(),
            failures = r.failures.len(),
            first_failure = %r.failures.first().map_or("", String::as_str),
            micros = r.micros,
            "round with failures"
        ),
        Err(e) => tracing::error!(node, revision, error = %e, "round failed"),
    }
}

/// The result of a `--once` or `--dry-run` round: its report, or an error
/// when any change failed.
fn last_round(round: Result<Report>) -> Result<Out> {
    let r = round?;
    if !r.failures.is_empty() {
        return Err(Error::storage(format!(
            "{} changes failed (the next round retries them):\n{}",
            r.failures.len(),
            r.failures.join("\n")
        )));
    }
    Out::new(&r, text(&r))
}

/// One line per round of a long-running agent, flushed at once (its
/// output is usually a pipe to a log).
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.trim_end());
    let _ = out.flush();
}

/// The agent of a node managed by a controller: wait for the node's plan
/// to change (long poll, answered within milliseconds of the commit),
/// apply it, report. Without a change it still reconciles every interval,
/// so drift is repaired as with a local plan.
async fn over_network(
    agent: &Agent<Netlink>,
    client: &vmfabric_client::RemoteStore,
    node: &str,
    args: &crate::args::AgentRun,
    json: bool,
) -> Result<Out> {
    let wait = Duration::from_secs_f64(args.interval.clamp(1.0, 300.0).round());
    let mut have: Option<String> = None;
    let mut backoff = Duration::from_millis(200);
    let mut watch = (!args.once && !args.dry_run)
        .then(|| link_watch(node))
        .flatten();
    // The plan last applied: a guest starting or stopping is handled with
    // it, without asking the controller.
    let mut last: Option<vmfabric_client::PlanResponse> = None;
    let mut vm_links = BTreeSet::new();
    loop {
        let fetched = match (watch.as_mut(), &last) {
            (Some(w), Some(prev)) => {
                tokio::select! {
                    r = client.plan(node, have.as_deref(), wait) => r,
                    c = w.changed(&vm_links) => {
                        let woke = c.map(|()| true);
                        settle(&mut watch, &vm_links, woke, node).await;
                        Ok(prev.clone())
                    }
                }
            }
            _ => client.plan(node, have.as_deref(), wait).await,
        };
        let resp = match fetched {
            Ok(r) => r,
            // Wrong token or node: retrying cannot help.
            Err(
                e @ (Error::Unauthenticated { .. }
                | Error::Forbidden { .. }
                | Error::NotFound { .. }),
            ) => {
                return Err(e);
            }
            Err(e) => {
                if args.once {
                    return Err(e);
                }
                tracing::warn!(node, error = %e, retry_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), "cannot get the plan");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        vm_links = watch::vm_links(&resp.plan);
        let round = agent
            .reconcile(&resp.plan, args.dry_run)
            .await
            .map_err(agent_error);
        let mut status = match &round {
            Ok(r) => serde_json::to_value(r).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        if let Some(o) = status.as_object_mut() {
            o.insert("revision".into(), resp.revision.into());
            o.insert("hash".into(), resp.hash.clone().into());
        }
        if !args.dry_run
            && let Err(e) = client.report_status(node, &status).await
        {
            tracing::warn!(node, error = %e, "cannot report to the controller");
        }
        if args.once || args.dry_run {
            return last_round(round);
        }
        log_round(node, &round, Some(resp.revision));
        let line = match &round {
            Ok(r) if json => serde_json::to_string(&status).unwrap_or_default(),
            Ok(r) => format!("revision {}: {}", resp.revision, text(r)),
            Err(e) => format!("error: {e}"),
        };
        print_line(&line);
        // A failed round is retried after the interval even if the plan
        // stays the same (the long poll returns then).
        have = Some(resp.hash.clone());
        last = Some(resp);
    }
}
