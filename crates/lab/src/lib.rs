//! Network-namespace labs: the "world" around vmfabric nodes (switches,
//! provider routers, route reflectors, a core router, namespaces standing
//! in for VMs) built from nothing, and torn down again — namespaces
//! deleted and daemons killed by PID — even when a test fails.
//!
//! The lab never configures a node's VM networking: that is the agent's
//! job. It only plays the parts that are not vmfabric's: the data center,
//! the node's base configuration (its uplink and address), and the
//! hypervisor (moving a VM's interface into the VM and configuring the
//! guest as cloud-init would).
//!
//! Addresses are only documentation ranges and 10/8, 172.16/12, used only
//! inside the lab's own namespaces (LAB.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub mod guest;
pub mod libvirt;
pub mod lxd;
pub mod qemu;
pub mod scenarios;
pub mod worlds;

/// What went wrong building or using a lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Missing(String),
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A lab: namespaces and daemons that exist only as long as it does.
#[derive(Debug)]
pub struct Lab {
    /// Unique prefix of this lab's namespaces.
    pub prefix: String,
    /// Scratch folder: daemon state, agent state, the database.
    pub dir: PathBuf,
    namespaces: Vec<String>,
    pids: Vec<u32>,
    /// Keep everything when dropped (`vmfabric lab up`).
    pub keep: bool,
    _tmp: Option<tempfile::TempDir>,
}

/// Fail with what to install when a tool is missing.
pub fn require(tools: &[(&str, &str)]) -> Result<()> {
    for (tool, package) in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            return Err(Error::Missing(format!(
                "the lab needs {tool}: apt-get install {package} (scripts/test installs it)"
            )));
        }
    }
    Ok(())
}

/// Labs need root to make namespaces; say so plainly.
pub fn require_root() -> Result<()> {
    let out = Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        return Err(Error::Missing(
            "the lab creates network namespaces: run it as root".into(),
        ));
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<Output> {
    let text = format!("{cmd:?}");
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: text,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

impl Lab {
    /// A new, empty lab with a unique prefix; `tag` names it in the prefix.
    pub fn new(tag: &str) -> Result<Lab> {
        require_root()?;
        require(&[("ip", "iproute2"), ("ping", "iputils-ping")])?;
        let tmp = tempfile::Builder::new().prefix("vmfabric-lab-").tempdir()?;
        let unique = tmp
            .path()
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .chars()
                    .rev()
                    .take(5)
                    .collect::<String>()
            })
            .unwrap_or_default()
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "x");
        Ok(Lab {
            prefix: format!("vf{tag}{unique}"),
            dir: tmp.path().to_path_buf(),
            namespaces: Vec::new(),
            pids: Vec::new(),
            keep: false,
            _tmp: Some(tmp),
        })
    }

    /// A lab in a fixed folder that outlives this process (`lab up`).
    pub fn persistent(tag: &str, dir: &Path) -> Result<Lab> {
        require_root()?;
        std::fs::create_dir_all(dir)?;
        Ok(Lab {
            prefix: format!("vf{tag}"),
            dir: dir.to_path_buf(),
            namespaces: Vec::new(),
            pids: Vec::new(),
            keep: true,
            _tmp: None,
        })
    }

    /// The full name of this lab's namespace `short`.
    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// Create namespace `short` with its loopback up.
    pub fn add_ns(&mut self, short: &str) -> Result<String> {
        let ns = self.ns(short);
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        self.namespaces.push(ns.clone());
        self.ip(&ns, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n NS ARGS...`
    pub fn ip(&self, ns: &str, args: &[&str]) -> Result<String> {
        let out = run(Command::new("ip").arg("-n").arg(ns).args(args))?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Many `ip` commands in one process (`ip -n NS -batch -`).
    pub fn ip_batch(&self, ns: &str, lines: &[String]) -> Result<()> {
        let file = self.dir.join(format!("batch-{}", std::process::id()));
        std::fs::write(&file, lines.join("\n") + "\n")?;
        run(Command::new("ip")
            .arg("-n")
            .arg(ns)
            .arg("-batch")
            .arg(&file))?;
        Ok(())
    }

    /// A command inside namespace `ns`.
    pub fn exec(&self, ns: &str, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, cmd]);
        c
    }

    /// Run a command inside `ns`, insisting that it works.
    pub fn sh(&self, ns: &str, args: &[&str]) -> Result<String> {
        let (cmd, rest) = args
            .split_first()
            .ok_or_else(|| Error::Missing("empty command".into()))?;
        let out = run(self.exec(ns, cmd).args(rest))?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    pub fn sysctl(&self, ns: &str, key: &str, value: &str) -> Result<()> {
        self.sh(ns, &["sysctl", "-qw", &format!("{key}={value}")])?;
        Ok(())
    }

    /// A veth between two namespaces.
    pub fn wire(&self, a: &str, a_if: &str, b: &str, b_if: &str) -> Result<()> {
        self.ip(
            a,
            &[
                "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b,
            ],
        )?;
        self.ip(a, &["link", "set", a_if, "up"])?;
        self.ip(b, &["link", "set", b_if, "up"])?;
        Ok(())
    }

    /// Whether `ns` can ping `target` (3 tries, 1 s each).
    pub fn ping(&self, ns: &str, target: &str) -> bool {
        let mut c = self.exec(ns, "ping");
        if target.contains(':') {
            c.arg("-6");
        }
        c.args(["-c", "1", "-W", "1", target]);
        (0..3).any(|_| c.output().map(|o| o.status.success()).unwrap_or(false))
    }

    /// Whether `ns` can ping `target` with one echo request (1 s).
    pub fn ping_once(&self, ns: &str, target: &str) -> bool {
        let mut c = self.exec(ns, "ping");
        if target.contains(':') {
            c.arg("-6");
        }
        c.args(["-c", "1", "-W", "1", target]);
        c.output().is_ok_and(|o| o.status.success())
    }

    /// Wait until `f` holds, up to `timeout`.
    pub fn wait_for(&self, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        f()
    }

    /// Wait until no IPv6 address in `ns` is tentative (duplicate address
    /// detection of the kernel's own link-local addresses takes a second or
    /// more on a loaded machine, and until then NDP from them fails).
    pub fn ipv6_settled(&self, ns: &str, timeout: Duration) -> bool {
        self.wait_for(timeout, || {
            self.ip(ns, &["-6", "addr", "show", "tentative"])
                .is_ok_and(|o| o.trim().is_empty())
        })
    }

    /// Remember a daemon to kill when the lab goes.
    pub fn track(&mut self, pid: u32) {
        self.pids.push(pid);
    }

    /// Forget a daemon that has been stopped and reaped, so teardown never
    /// signals a PID the kernel may have given to another process since.
    pub fn untrack(&mut self, pid: u32) {
        self.pids.retain(|p| *p != pid);
    }

    /// Read a pid file (daemons write them after forking).
    pub fn track_pidfile(&mut self, file: &Path) -> Result<u32> {
        for _ in 0..100 {
            if let Ok(t) = std::fs::read_to_string(file)
                && let Ok(pid) = t.trim().parse::<u32>()
            {
                self.track(pid);
                return Ok(pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(Error::Missing(format!("no pid in {}", file.display())))
    }

    /// Namespaces and daemons of this lab, for `lab down` in another process.
    pub fn inventory(&self) -> (Vec<String>, Vec<u32>) {
        (self.namespaces.clone(), self.pids.clone())
    }

    /// Kill every daemon by PID and delete every namespace; errors are
    /// ignored, so cleanup always runs to the end.
    pub fn cleanup(&mut self) {
        teardown(&self.namespaces, &self.pids);
        self.namespaces.clear();
        self.pids.clear();
    }
}

/// Kill `pids` and delete `namespaces`.
pub fn teardown(namespaces: &[String], pids: &[u32]) {
    for pid in pids {
        let _ = Command::new("kill").arg(pid.to_string()).output();
    }
    for pid in pids {
        for _ in 0..50 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
    }
    for ns in namespaces.iter().rev() {
        // Daemons started inside a namespace that we did not track (none
        // should exist) die with `ip netns pids`.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).output();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            self.cleanup();
        }
    }
}
