//! The daemons the agent configures: FRR (write frr.conf, reload with
//! frr-reload.py, only when the file changed) and ndppd (write the config,
//! restart, only when it changed or the daemon died). Where each daemon
//! lives is a setting, so the lab can run one FRR per namespace.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::process::Command;

use crate::Error;

/// Where a node's FRR is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrrSettings {
    /// Folder of frr.conf (and, for per-namespace FRRs, the vty sockets).
    pub conf_dir: PathBuf,
    /// Folder of the daemons' vty sockets [default: FRR's own].
    pub vty_socket: Option<PathBuf>,
    /// frr-reload.py.
    pub reload: PathBuf,
    /// Folder of vtysh.
    pub bindir: PathBuf,
}

impl Default for FrrSettings {
    fn default() -> FrrSettings {
        FrrSettings {
            conf_dir: "/etc/frr".into(),
            vty_socket: None,
            reload: "/usr/lib/frr/frr-reload.py".into(),
            bindir: "/usr/bin".into(),
        }
    }
}

/// A BGP session as FRR reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub peer: String,
    /// The address family the line is about (`ipv4`, `ipv6`): one session
    /// to a reflector carries both when the cluster's pool has IPv6.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub family: String,
    pub state: String,
    pub prefixes_sent: u64,
}

/// FNV-1a: a hash that stays the same across runs and builds.
pub fn hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Write `path` only if its content differs; true if it was written.
/// Written next to the target and renamed, so no reader sees half a file.
pub fn write_if_changed(path: &Path, content: &str) -> Result<bool, String> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("vmfabric-new");
    std::fs::write(&tmp, content).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    Ok(true)
}

async fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

impl FrrSettings {
    pub fn conf(&self) -> PathBuf {
        self.conf_dir.join("frr.conf")
    }

    fn vtysh(&self) -> Command {
        let mut c = Command::new(self.bindir.join("vtysh"));
        if let Some(s) = &self.vty_socket {
            c.arg("--vty_socket").arg(s);
        }
        c
    }

    /// FRR must be installed for a node that runs BGP.
    pub fn check(&self) -> Result<(), Error> {
        for p in [self.reload.clone(), self.bindir.join("vtysh")] {
            if !p.exists() {
                return Err(Error::Prerequisite(format!(
                    "{} is missing: this ip-fabric node needs FRR (apt-get install frr)",
                    p.display()
                )));
            }
        }
        Ok(())
    }

    /// Write frr.conf and reload FRR if the config changed since the last
    /// successful reload (`applied`: its hash). True if it reloaded.
    pub async fn sync(
        &self,
        conf: &str,
        applied: &mut Option<u64>,
        dry_run: bool,
    ) -> Result<bool, Error> {
        let same = *applied == Some(hash(conf))
            && std::fs::read_to_string(self.conf()).ok().as_deref() == Some(conf);
        if same || dry_run {
            return Ok(!same);
        }
        self.check()?;
        write_if_changed(&self.conf(), conf).map_err(Error::Daemon)?;
        let rundir = self
            .vty_socket
            .clone()
            .unwrap_or_else(|| "/var/run/frr".into());
        let mut cmd = Command::new("python3");
        cmd.arg(&self.reload)
            .arg("--reload")
            .arg("--bindir")
            .arg(&self.bindir)
            .arg("--confdir")
            .arg(&self.conf_dir)
            .arg("--rundir")
            .arg(&rundir);
        if let Some(s) = &self.vty_socket {
            cmd.arg("--vty_socket").arg(s);
        }
        cmd.arg(self.conf());
        output(&mut cmd)
            .await
            .map_err(|e| Error::Daemon(format!("frr-reload failed: {e}")))?;
        *applied = Some(hash(conf));
        Ok(true)
    }

    /// The BGP sessions, from `show bgp summary json`.
    pub async fn sessions(&self) -> Vec<Session> {
        let Ok(text) = output(self.vtysh().arg("-c").arg("show bgp summary json")).await else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let mut out = Vec::new();
        for (afi, family) in [("ipv4Unicast", "ipv4"), ("ipv6Unicast", "ipv6")] {
            if let Some(peers) = v[afi]["peers"].as_object() {
                for (peer, p) in peers {
                    out.push(Session {
                        peer: peer.clone(),
                        family: family.to_string(),
                        state: p["state"].as_str().unwrap_or("?").to_string(),
                        prefixes_sent: p["pfxSnt"].as_u64().unwrap_or(0),
                    });
                }
            }
        }
        out
    }
}

/// Where a node's ndppd is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NdppdSettings {
    pub conf: PathBuf,
    pub pidfile: PathBuf,
    pub binary: PathBuf,
}

impl Default for NdppdSettings {
    fn default() -> NdppdSettings {
        NdppdSettings {
            conf: "/etc/ndppd.conf".into(),
            pidfile: "/run/ndppd.pid".into(),
            binary: "/usr/sbin/ndppd".into(),
        }
    }
}

impl NdppdSettings {
    fn pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(&self.pidfile)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    pub fn running(&self) -> bool {
        self.pid().is_some()
    }

    fn stop(&self) {
        if let Some(pid) = self.pid() {
            // SIGTERM, then wait for the process to go (ndppd exits at once).
            let _ = std::process::Command::new("kill")
                .arg(pid.to_string())
                .status();
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }

    /// Run ndppd with `conf`, or stop it when `conf` is `None`. True if
    /// anything changed.
    pub async fn sync(&self, conf: Option<&str>, dry_run: bool) -> Result<bool, Error> {
        let Some(conf) = conf else {
            let running = self.running();
            if running && !dry_run {
                self.stop();
            }
            return Ok(running);
        };
        let same = std::fs::read_to_string(&self.conf).ok().as_deref() == Some(conf);
        if same && self.running() {
            return Ok(false);
        }
        if dry_run {
            return Ok(true);
        }
        if !self.binary.exists() {
            return Err(Error::Prerequisite(format!(
                "{} is missing: this node proxies NDP with ndppd (apt-get install ndppd)",
                self.binary.display()
            )));
        }
        write_if_changed(&self.conf, conf).map_err(Error::Daemon)?;
        self.stop();
        output(
            Command::new(&self.binary)
                .arg("-d")
                .arg("-c")
                .arg(&self.conf)
                .arg("-p")
                .arg(&self.pidfile),
        )
        .await
        .map_err(|e| Error::Daemon(format!("ndppd did not start: {e}")))?;
        // ndppd writes its pid file right after daemonising.
        for _ in 0..50 {
            if self.running() {
                return Ok(true);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(Error::Daemon(format!(
            "ndppd exited; check {} and the syslog",
            self.conf.display()
        )))
    }
}
