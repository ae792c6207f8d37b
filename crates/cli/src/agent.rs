//! `vmfabric agent`: run the node agent, or show what it last did.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use vmfabric_agent::daemons::{FrrSettings, NdppdSettings};
use vmfabric_agent::netlink::Netlink;
use vmfabric_agent::{Agent, Report, Settings, State};
use vmfabric_model::{Error, Result};
use vmfabric_plan::{NodePlan, ROUTE_PROTOCOL, build};
use vmfabric_store::Store;

use crate::Out;
use crate::args::{AgentArgs, AgentCmd, AgentDaemons};

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
        if p.node != node {
            return Err(Error::invalid(
                "plan",
                path.display(),
                format!("the file holds the plan of node {}, not {node}", p.node),
            ));
        }
        return Ok(p);
    }
    let store = crate::commands::open(db).await?;
    Ok(build(&store.plan_input(node).await?))
}

pub async fn run(db: Option<&str>, a: AgentArgs, json: bool) -> Result<Out> {
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
    loop {
        let round = async {
            let p = plan(db, &args, &node).await?;
            agent.reconcile(&p, args.dry_run).await.map_err(agent_error)
        }
        .await;
        if args.once || args.dry_run {
            let r = round?;
            if !r.failures.is_empty() {
                return Err(Error::storage(format!(
                    "{} changes failed (the next round retries them):\n{}",
                    r.failures.len(),
                    r.failures.join("\n")
                )));
            }
            return Out::new(&r, text(&r));
        }
        let line = match &round {
            Ok(r) if json => serde_json::to_string(r).unwrap_or_default(),
            Ok(r) => text(r),
            Err(e) => format!("error: {e}"),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.trim_end());
        let _ = out.flush();
        tokio::time::sleep(Duration::from_secs_f64(args.interval.max(0.05))).await;
    }
}
