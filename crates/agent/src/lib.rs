//! The node agent: makes a node's kernel, nftables, FRR and ndppd match the
//! node's plan, and keeps them so.
//!
//! One round: read the kernel ([`netlink::Dataplane::observe`]), compute the
//! difference with the plan ([`reconcile::diff`], pure), apply only that,
//! then bring the firewall, FRR and ndppd in line, each only when its
//! desired state changed or drifted. Applying the same plan twice changes
//! nothing the second time; the report counts every write.

pub mod daemons;
pub mod firewall;
mod linkdump;
pub mod netlink;
pub mod reconcile;
pub mod sysctl;
mod tap;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vmfabric_plan::NodePlan;
use vmfabric_plan::render::{frr, ndppd, nft};

use daemons::{FrrSettings, NdppdSettings, Session};
use firewall::{Nft, NftState};
use netlink::Dataplane;
use reconcile::{Action, Owned};

/// Why a round could not do its work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    #[error("kernel: {0}")]
    Kernel(String),
    #[error("{0}")]
    Conflict(String),
    #[error("missing prerequisite: {0}")]
    Prerequisite(String),
    #[error("firewall: {0}")]
    Firewall(String),
    #[error("daemon: {0}")]
    Daemon(String),
    #[error("state: {0}")]
    State(String),
}

/// Where the agent keeps its state and finds the daemons.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub frr: FrrSettings,
    pub ndppd: NdppdSettings,
    pub nft: PathBuf,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            state_dir: "/var/lib/vmfabric/agent".into(),
            frr: FrrSettings::default(),
            ndppd: NdppdSettings::default(),
            nft: "nft".into(),
        }
    }
}

/// What the agent remembers between rounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub owned: Owned,
    pub nft: NftState,
    /// Hash of the frr.conf FRR last reloaded successfully.
    #[serde(default)]
    pub frr: Option<u64>,
    #[serde(default)]
    pub last: Option<Report>,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub node: String,
    pub dry_run: bool,
    /// Kernel changes, as `+`/`-`/`~` lines.
    pub changes: Vec<String>,
    /// VM links without carrier (the guest is off): their routes are
    /// withheld until it starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guests_off: Vec<String>,
    /// Changes that failed, with the kernel's reason; repaired next round.
    pub failures: Vec<String>,
    pub firewall_changed: bool,
    /// Packets dropped so far, by rule.
    pub drops: BTreeMap<String, u64>,
    pub frr_changed: bool,
    pub sessions: Vec<Session>,
    pub ndppd_changed: bool,
    pub ndppd_running: bool,
    /// Every write this round made: kernel changes, ruleset, FRR, ndppd.
    pub writes: usize,
    /// Time spent reading and changing the kernel (links, addresses,
    /// routes, proxies, sysctls), in microseconds.
    pub kernel_micros: u64,
    /// Time spent on the firewall (checking and, when needed, writing).
    pub firewall_micros: u64,
    /// The whole round, firewall and daemons included.
    pub micros: u64,
}

impl State {
    fn path(settings: &Settings) -> PathBuf {
        settings.state_dir.join("state.json")
    }

    pub fn load(settings: &Settings) -> Result<State, Error> {
        match std::fs::read_to_string(State::path(settings)) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Error::State(format!(
                    "{} is damaged: {e}",
                    State::path(settings).display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::State(format!(
                "cannot read {}: {e}",
                State::path(settings).display()
            ))),
        }
    }

    pub fn save(&self, settings: &Settings) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::State(e.to_string()))?;
        daemons::write_if_changed(&State::path(settings), &text).map_err(Error::State)?;
        Ok(())
    }
}

/// The agent of one node.
#[derive(Debug)]
pub struct Agent<D> {
    pub dataplane: D,
    pub settings: Settings,
}

/// Whether this process may change the kernel.
pub fn check_root() -> Result<(), Error> {
    // SAFETY-free: geteuid has no preconditions.
    if nix_euid() != 0 {
        return Err(Error::Prerequisite(
            "the agent changes the kernel's network configuration: run it as root".into(),
        ));
    }
    Ok(())
}

#[allow(unsafe_code)]
fn nix_euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

impl<D: Dataplane> Agent<D> {
    /// One round: observe, diff, apply (unless `dry_run`), report.
    pub async fn reconcile(&self, plan: &NodePlan, dry_run: bool) -> Result<Report, Error> {
        let start = Instant::now();
        let mut state = State::load(&self.settings)?;
        let observed = self.dataplane.observe(plan).await?;
        let actions = reconcile::diff(plan, &observed, &state.owned)
            .map_err(|e| Error::Conflict(e.to_string()))?;
        let mut report = Report {
            node: plan.node.clone(),
            dry_run,
            changes: actions.iter().map(ToString::to_string).collect(),
            guests_off: reconcile::withheld(plan, &observed)
                .into_iter()
                .map(String::from)
                .collect(),
            ..Report::default()
        };
        let uplink_mac = observed.link(&plan.uplink).and_then(|l| l.mac.clone());
        if !dry_run {
            let failed = self.dataplane.apply(&observed, &actions).await;
            for a in &actions {
                if failed.iter().any(|(f, _)| f == a) {
                    continue;
                }
                match a {
                    Action::CreateLink { link } => {
                        state.owned.links.insert(link.name.clone());
                    }
                    Action::DeleteLink { name } => {
                        state.owned.links.remove(name);
                    }
                    Action::AddProxy { proxy } => {
                        state
                            .owned
                            .proxies
                            .insert((proxy.dev.clone(), proxy.address));
                    }
                    Action::DeleteProxy { proxy } => {
                        state
                            .owned
                            .proxies
                            .remove(&(proxy.dev.clone(), proxy.address));
                    }
                    _ => {}
                }
            }
            report.failures = failed.iter().map(|(a, e)| format!("{a}: {e}")).collect();
            report.writes = actions.len() - failed.len();
        }
        report.kernel_micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        // Firewall, FRR, ndppd: each one write when it changes.
        let fw_start = Instant::now();
        let ruleset = nft::ruleset(plan, uplink_mac.as_deref());
        let fw = Nft {
            binary: self.settings.nft.clone(),
        }
        .sync(&ruleset, &mut state.nft, dry_run)
        .await;
        match fw {
            Ok(r) => {
                report.firewall_changed = r.changed;
                report.drops = r.drops;
            }
            Err(e) => report.failures.push(e.to_string()),
        }
        report.firewall_micros = u64::try_from(fw_start.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(conf) = frr::node(plan) {
            match self.settings.frr.sync(&conf, &mut state.frr, dry_run).await {
                Ok(c) => report.frr_changed = c,
                Err(e) => report.failures.push(e.to_string()),
            }
            report.sessions = self.settings.frr.sessions().await;
        }
        match self
            .settings
            .ndppd
            .sync(ndppd::conf(plan).as_deref(), dry_run)
            .await
        {
            Ok(c) => report.ndppd_changed = c,
            Err(e) => report.failures.push(e.to_string()),
        }
        report.ndppd_running = self.settings.ndppd.running();
        if !dry_run {
            report.writes += usize::from(report.firewall_changed)
                + usize::from(report.frr_changed)
                + usize::from(report.ndppd_changed);
        }
        report.micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        if !dry_run {
            state.last = Some(report.clone());
            state.save(&self.settings)?;
        }
        Ok(report)
    }
}
