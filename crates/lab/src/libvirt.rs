//! A real libvirt daemon of the test's own (Debian's `libvirt-daemon` and
//! `libvirt-daemon-driver-qemu`, no `libvirt-daemon-system`): `libvirtd`
//! as root, in a lab namespace (so nothing it does can reach the root
//! namespace's network) and in a mount namespace of its own in which its
//! fixed paths (/etc/libvirt, /run/libvirt, /var/lib/libvirt,
//! /var/cache/libvirt, /var/log/libvirt) are folders of the lab: domains
//! it defines live and die with the test. Its socket is in the lab folder;
//! `virsh -c qemu:///system?socket=...` reaches it.
//!
//! Privileged libvirtd resolves the `libvirt-qemu` user of Debian's build
//! before it reads qemu.conf, and only `libvirt-daemon-system` creates that
//! user: the daemon's mount namespace gets its own /etc/passwd and
//! /etc/group with the user added, the machine's stay as they are.
//!
//! [`Libvirtd`] kills the daemon by its PID when dropped, also when a test
//! fails (`nsenter`, `unshare` and `sh` all exec, so the PID spawned is
//! libvirtd's).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Lab, Result, require};

/// libvirt's fixed paths that get folders of the lab.
const PRIVATE: [&str; 5] = [
    "/etc/libvirt",
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/cache/libvirt",
    "/var/log/libvirt",
];

/// Everything a libvirt test needs installed; fails with what to install.
pub fn require_tools() -> Result<()> {
    require(&[
        ("libvirtd", "libvirt-daemon"),
        // The QEMU driver's package; its one program stands for it.
        ("virt-qemu-run", "libvirt-daemon-driver-qemu"),
        ("virsh", "libvirt-clients"),
        ("virt-xml-validate", "libvirt-clients"),
        // virt-xml-validate runs xmllint, which libvirt-clients lacks.
        ("xmllint", "libxml2-utils"),
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
    ])
}

/// A running libvirtd of this test.
#[derive(Debug)]
pub struct Libvirtd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    daemon: Option<Child>,
    /// Mount points that did not exist and were made for the daemon's
    /// mount namespace: removed again (when still empty) at the end.
    made: Vec<PathBuf>,
}

impl Libvirtd {
    /// Start libvirtd in namespace `ns` with its state under the lab.
    pub fn start(lab: &Lab, ns: &str) -> Result<Libvirtd> {
        require_tools()?;
        let dir = lab.dir.join("libvirt");
        let sock = dir.join("sock");
        let etc = dir.join("etc");
        for d in ["sock", "etc", "run", "lib", "cache", "log"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        std::fs::write(
            etc.join("libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{}\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n",
                sock.display()
            ),
        )?;
        // Guests it might start run as root: no other user needed.
        std::fs::write(
            etc.join("qemu.conf"),
            "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n",
        )?;
        std::fs::write(etc.join("libvirt.conf"), "")?;
        let mut passwd = std::fs::read_to_string("/etc/passwd")?;
        let mut group = std::fs::read_to_string("/etc/group")?;
        if !passwd.lines().any(|l| l.starts_with("libvirt-qemu:")) {
            passwd.push_str("libvirt-qemu:x:64055:64055:libvirt:/nonexistent:/usr/sbin/nologin\n");
        }
        for g in ["libvirt-qemu:x:64055:", "kvm:x:64056:"] {
            let name = g.split(':').next().unwrap_or_default();
            if !group.lines().any(|l| l.starts_with(&format!("{name}:"))) {
                group.push_str(g);
                group.push('\n');
            }
        }
        std::fs::write(dir.join("passwd"), passwd)?;
        std::fs::write(dir.join("group"), group)?;
        let mut made = Vec::new();
        for p in PRIVATE {
            let p = Path::new(p);
            if !p.exists() {
                std::fs::create_dir_all(p)?;
                made.push(p.to_path_buf());
            }
        }
        let mut script = String::from("set -e\n");
        for (target, source) in PRIVATE.iter().zip(["etc", "run", "lib", "cache", "log"]) {
            script.push_str(&format!(
                "mount --bind '{}' '{target}'\n",
                dir.join(source).display()
            ));
        }
        script.push_str(&format!(
            "mount --bind '{0}/passwd' /etc/passwd\nmount --bind '{0}/group' /etc/group\n\
             exec libvirtd -f '{1}'\n",
            dir.display(),
            etc.join("libvirtd.conf").display()
        ));
        let log = dir.join("libvirtd.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .args(["--", "unshare", "--mount", "--propagation", "private", "--"])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut d = Libvirtd {
            socket: sock.join("libvirt-sock"),
            dir,
            log,
            daemon: Some(child),
            made,
        };
        // Ready when virsh gets an answer (the socket appears before the
        // drivers have started).
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if d.socket.exists() && d.virsh(&["version"]).is_ok() {
                return Ok(d);
            }
            let exited = d
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || Instant::now() > end {
                let why = if exited {
                    "exited"
                } else {
                    "not ready in 60 s"
                };
                let text = d.log_text();
                d.stop();
                return Err(Error::Missing(format!("libvirtd {why}; its log:\n{text}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The connection URI of this daemon.
    pub fn uri(&self) -> String {
        format!("qemu:///system?socket={}", self.socket.display())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `virsh -c URI ARGS...`, insisting that it works.
    pub fn virsh(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("virsh")
            .arg("-c")
            .arg(self.uri())
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(Error::Command {
                cmd: format!("virsh {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Kill the daemon by its PID (TERM, then KILL) and remove the mount
    /// points made for it.
    pub fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = Command::new("kill").arg(daemon.id().to_string()).output();
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end && !matches!(daemon.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        for p in std::mem::take(&mut self.made).iter().rev() {
            let _ = std::fs::remove_dir(p);
        }
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        self.stop();
    }
}
