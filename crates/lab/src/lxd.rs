//! Real LXD containers on a lab node: an LXD daemon of the test's own
//! (Debian's `lxd` package, its state in the lab's folder) running in the
//! node's network namespace, so the veth peers the agent makes there are
//! what LXD's `nictype: physical` moves into each container and back.
//!
//! Why in the node's namespace: LXD looks for a physical NIC's parent in
//! its own network namespace (through `/sys/class/net`), and the lab's
//! nodes are namespaces while the tests must never touch the root
//! namespace's network. A real node runs LXD and the agent in the same
//! (root) namespace; here both share the node's. The daemon gets a mount
//! namespace of its own with a sysfs of the node's namespace (so
//! `/sys/class/net` shows the node's links) and the host's cgroup tree
//! moved back on top of it (LXD needs it to run containers). It has no
//! network of its own (no lxdbr0) and a `dir` storage pool.
//!
//! The daemon's PID is the one the lab spawned (`nsenter`, `unshare` and
//! `sh` all exec); [`Lxd`] deletes its containers and kills it by that PID
//! when dropped, also when a test fails.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Lab, Result, require, run};

/// The alias of the test image in every lab LXD.
pub const IMAGE: &str = "vmfabric-guest";

/// Everything an LXD test needs installed; fails with what to install.
pub fn require_tools() -> Result<()> {
    require(&[
        ("lxd", "lxd"),
        ("lxc", "lxd-client"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("mmdebstrap", "mmdebstrap"),
        ("mkfs.ext4", "e2fsprogs"),
    ])
}

/// Build the LXD image from the guest image's root, or reuse the cached
/// one (see `scripts/guest-image-lxd`); returns its folder.
pub fn image() -> Result<PathBuf> {
    require_tools()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/guest-image-lxd");
    let out = run(&mut Command::new(&script))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    for f in ["meta.tar.gz", "rootfs.tar.gz"] {
        if !dir.join(f).is_file() {
            return Err(Error::Missing(format!(
                "LXD image incomplete: {} is missing",
                dir.join(f).display()
            )));
        }
    }
    Ok(dir)
}

/// A running LXD daemon of this test.
#[derive(Debug)]
pub struct Lxd {
    /// LXD_DIR: database, storage pool, logs, socket.
    pub dir: PathBuf,
    /// The node namespace it runs in.
    pub ns: String,
    pub log: PathBuf,
    daemon: Option<Child>,
    containers: Vec<String>,
}

impl Lxd {
    /// Start LXD in node namespace `ns` (state under the lab's folder,
    /// `tag` names it), give it a `dir` storage pool and import `image`
    /// (from [`image`]) as [`IMAGE`].
    pub fn start(lab: &Lab, ns: &str, tag: &str, image: &Path) -> Result<Lxd> {
        require_tools()?;
        let dir = lab.dir.join(format!("lxd-{tag}"));
        let cgroup = lab.dir.join(format!("lxd-{tag}-cgroup"));
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(&cgroup)?;
        let log = lab.dir.join(format!("lxd-{tag}.log"));
        let out = std::fs::File::create(lab.dir.join(format!("lxd-{tag}.out")))?;
        let script = "set -e\n\
            mount --rbind /sys/fs/cgroup \"$1\"\n\
            mount -t sysfs sysfs /sys\n\
            mount --move \"$1\" /sys/fs/cgroup\n\
            exec lxd --logfile \"$2\"";
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["--", "unshare", "--mount", "--propagation", "private", "--"])
            .args(["sh", "-c", script, "sh"])
            .arg(&cgroup)
            .arg(&log)
            .env("LXD_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        // From here on, Drop stops the daemon whatever fails next.
        let lxd = Lxd {
            dir,
            ns: ns.to_string(),
            log,
            daemon: Some(child),
            containers: Vec::new(),
        };
        lxd.command("lxd", &["waitready", "--timeout", "60"], None)
            .map_err(|e| lxd.with_log(e))?;
        let preseed = "storage_pools:\n- name: default\n  driver: dir\n\
            profiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n";
        lxd.command("lxd", &["init", "--preseed"], Some(preseed))?;
        let meta = image.join("meta.tar.gz");
        let rootfs = image.join("rootfs.tar.gz");
        lxd.command(
            "lxc",
            &[
                "image",
                "import",
                &meta.to_string_lossy(),
                &rootfs.to_string_lossy(),
                "--alias",
                IMAGE,
            ],
            None,
        )?;
        Ok(lxd)
    }

    /// The daemon's log, for error messages.
    pub fn log_text(&self) -> String {
        let mut s = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Ok(out) = std::fs::read_to_string(self.dir.with_extension("out")) {
            s.push_str(&out);
        }
        s
    }

    fn with_log(&self, e: Error) -> Error {
        Error::Missing(format!("{e}\nLXD's log:\n{}", self.log_text()))
    }

    /// `lxd`/`lxc` against this daemon, with `stdin` if given.
    pub fn command(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut c = Command::new(tool);
        c.args(args)
            .env("LXD_DIR", &self.dir)
            // The client's own configuration stays in the lab too.
            .env("LXD_CONF", self.dir.join("client"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn()?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(Error::Command {
                cmd: format!("{tool} {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// `lxc init IMAGE NAME < CONFIG`: the container, not started (LXD
    /// unpacks the image and shifts its owners for an unprivileged
    /// container, the slow part on a busy machine).
    pub fn create(&mut self, name: &str, config: &str) -> Result<()> {
        self.command("lxc", &["init", IMAGE, name], Some(config))?;
        self.containers.push(name.to_string());
        Ok(())
    }

    /// `lxc start NAME`, with LXD's log when it fails.
    pub fn start_container(&self, name: &str) -> Result<()> {
        self.command("lxc", &["start", name], None)
            .map_err(|e| self.with_log(e))?;
        Ok(())
    }

    /// A command inside container `name` (`lxc exec`).
    pub fn exec(&self, name: &str, args: &[&str]) -> Result<String> {
        let mut all = vec!["exec", name, "--"];
        all.extend_from_slice(args);
        self.command("lxc", &all, None)
    }

    /// Stop container `name` at once (as `lxc stop --force`).
    pub fn stop(&self, name: &str) -> Result<()> {
        self.command("lxc", &["stop", "--force", name], None)?;
        Ok(())
    }

    /// Delete every container, shut the daemon down and kill it by PID.
    pub fn shutdown(&mut self) {
        for c in std::mem::take(&mut self.containers) {
            let _ = self.command("lxc", &["delete", "--force", &c], None);
        }
        let Some(mut daemon) = self.daemon.take() else {
            return;
        };
        let _ = self.command("lxd", &["shutdown", "--timeout", "20"], None);
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if let Ok(Some(_)) = daemon.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
}

impl Drop for Lxd {
    fn drop(&mut self) {
        self.shutdown();
    }
}
