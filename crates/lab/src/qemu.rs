//! Real guests: a Debian image built from Debian's packages
//! (`scripts/guest-image`), a NoCloud seed carrying the network-config
//! vmfabric renders, and QEMU booting it inside a node's namespace on the
//! tap the agent made. The guest reports its addresses, routes and pings
//! on its serial console between markers, so the test reads the guest's
//! own view without any network or agent inside it.
//!
//! `/dev/kvm` on these machines fails on real guests (LAB.md), so QEMU
//! runs with TCG.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Error, Lab, Result, require, run};

/// The marker of each report line on the guest's console.
const MARK: &str = "VMFABRIC-";

/// The cached guest image: direct kernel boot and a raw ext4 root.
#[derive(Debug, Clone)]
pub struct Image {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub root: PathBuf,
}

/// The kernel command line that makes cloud-init use `renderer` (netplan,
/// networkd or eni; the image has all three) instead of the image's
/// default, networkd: cloud-init merges `cc: ... end_cc` into its config.
pub fn renderer_cmdline(renderer: &str) -> String {
    let mut line = format!(
        "cc: system_info: {{network: {{renderers: [{renderer}], activators: [{renderer}]}}}} end_cc"
    );
    // With ifupdown in charge, networkd manages no link and its
    // wait-online would hold the boot for its whole 120 s timeout.
    if renderer == "eni" {
        line.push_str(
            " systemd.mask=systemd-networkd.service systemd.mask=systemd-networkd-wait-online.service",
        );
    }
    line
}

/// The file that shows cloud-init used `renderer` in the guest.
pub fn renderer_file(renderer: &str) -> &'static str {
    match renderer {
        "netplan" => "/etc/netplan/50-cloud-init.yaml",
        "eni" => "/etc/network/interfaces.d/50-cloud-init",
        _ => "/etc/systemd/network/10-cloud-init-eth0.network",
    }
}

/// Everything a real-guest test needs installed; fails with what to
/// install, never skips.
pub fn require_tools() -> Result<()> {
    require(&[
        ("mmdebstrap", "mmdebstrap"),
        ("mkfs.ext4", "e2fsprogs"),
        ("xorriso", "xorriso"),
        ("qemu-system-x86_64", "qemu-system-x86"),
    ])
}

/// Build the guest image or reuse the cached one (see `scripts/guest-image`).
pub fn image() -> Result<Image> {
    require_tools()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/guest-image");
    let out = run(&mut Command::new(&script))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let image = Image {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        root: dir.join("root.img"),
        dir,
    };
    for f in [&image.kernel, &image.initrd, &image.root] {
        if !f.is_file() {
            return Err(Error::Missing(format!(
                "guest image incomplete: {} is missing",
                f.display()
            )));
        }
    }
    Ok(image)
}

/// The user-data a guest of the lab gets: after cloud-init has set up the
/// network (runcmd runs in cloud-final, after network-online.target), a
/// script prints the guest's addresses and routes to the serial console,
/// then pings each of `pings` (retrying while the other guests boot) and
/// prints the result.
pub fn user_data(pings: &[IpAddr]) -> String {
    let mut targets = String::new();
    for p in pings {
        let _ = write!(targets, " {p}");
    }
    format!(
        r#"#cloud-config
write_files:
  - path: /usr/local/sbin/vmfabric-report
    permissions: "0755"
    content: |
      #!/bin/sh
      # The serial getty starting on ttyS0 hangs the line up (vhangup):
      # that would kill this script (SIGHUP) or fail its writes (EIO) on a
      # descriptor opened before. So: ignore HUP, and open ttyS0 anew for
      # every line.
      trap '' HUP
      say() {{ echo "$*" >/dev/ttyS0 2>/dev/null || {{ sleep 1; echo "$*" >/dev/ttyS0; }}; }}
      up() {{ cut -d' ' -f1 /proc/uptime; }}
      say "{MARK}UP $(up)"
      say "{MARK}ADDR $(ip -j addr)"
      say "{MARK}ROUTE4 $(ip -4 -j route)"
      say "{MARK}ROUTE6 $(ip -6 -j route)"
      say "{MARK}FILES $(find /etc/netplan /etc/systemd/network /etc/network/interfaces.d -type f 2>/dev/null | tr '\n' ' ')"
      say "{MARK}DNS $(grep -h -E '^(DNS|Domains)=|dns-(nameservers|search)' /etc/systemd/network/* /run/systemd/network/* /etc/network/interfaces.d/* 2>/dev/null | tr '\n' ';')"
      for t in{targets}; do
        ok=no; i=0
        while [ $i -lt 120 ]; do
          if ping -c 1 -W 1 "$t" >/dev/null 2>&1; then ok=yes; break; fi
          i=$((i+1)); sleep 0.5
        done
        say "{MARK}PING $t $ok $(up)"
      done
      say "{MARK}END"
runcmd:
  - [/usr/local/sbin/vmfabric-report]
"#
    )
}

/// A NoCloud seed (ISO 9660, volume `cidata`) in `dir`: `network_config`
/// exactly as given, meta-data naming the instance, and `user_data`.
pub fn seed(dir: &Path, name: &str, network_config: &str, user_data: &str) -> Result<PathBuf> {
    let files = dir.join(format!("seed-{name}"));
    std::fs::create_dir_all(&files)?;
    std::fs::write(files.join("network-config"), network_config)?;
    std::fs::write(
        files.join("meta-data"),
        format!("instance-id: {name}\nlocal-hostname: {name}\n"),
    )?;
    std::fs::write(files.join("user-data"), user_data)?;
    let iso = dir.join(format!("seed-{name}.iso"));
    let _ = std::fs::remove_file(&iso);
    run(Command::new("xorriso")
        .args([
            "-as",
            "genisoimage",
            "-quiet",
            "-volid",
            "cidata",
            "-joliet",
            "-rock",
            "-output",
        ])
        .arg(&iso)
        .arg(files.join("user-data"))
        .arg(files.join("meta-data"))
        .arg(files.join("network-config")))?;
    Ok(iso)
}

/// A booting guest: QEMU's PID (the lab kills it) and its console file.
#[derive(Debug)]
pub struct Guest {
    pub name: String,
    pub pid: u32,
    pub console: PathBuf,
    /// When QEMU was started.
    pub started: Instant,
}

/// How to boot one guest.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    pub name: &'a str,
    /// The node namespace holding the tap.
    pub node_ns: &'a str,
    /// The agent's tap (`<vm>_net0`).
    pub tap: &'a str,
    pub mac: &'a str,
    pub seed: &'a Path,
    /// Extra kernel command line (e.g. a `cc: ... end_cc` renderer choice).
    pub append: &'a str,
}

/// Start QEMU (TCG, 1 vCPU, 512 MiB, `-snapshot`, direct kernel boot)
/// inside `b.node_ns` on tap `b.tap`; the lab kills it by PID.
pub fn boot(lab: &mut Lab, image: &Image, b: &Boot<'_>) -> Result<Guest> {
    let console = lab.dir.join(format!("console-{}.log", b.name));
    let log = std::fs::File::create(lab.dir.join(format!("qemu-{}.log", b.name)))?;
    let append = format!(
        "root=/dev/vda rw console=ttyS0 quiet loglevel=1 systemd.show_status=false {}",
        b.append
    );
    let mut cmd = lab.exec(b.node_ns, "qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-smp", "1", "-m", "512", "-snapshot"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", &append])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio",
            image.root.display()
        ))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,media=cdrom,readonly=on",
            b.seed.display()
        ))
        .arg("-netdev")
        .arg(format!(
            "tap,id=n0,ifname={},script=no,downscript=no",
            b.tap
        ))
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=n0,mac={}", b.mac))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    // `ip netns exec` execs QEMU, so the child's PID is QEMU's.
    let pid = child.id();
    lab.track(pid);
    // Reap QEMU when it exits so no zombie waits for the test's end.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(Guest {
        name: b.name.to_string(),
        pid,
        console,
        started,
    })
}

/// What the guest printed about itself.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `ip -j addr`.
    pub addr: Value,
    /// `ip -4 -j route` and `ip -6 -j route` (main table).
    pub route4: Value,
    pub route6: Value,
    /// Ping target, whether it answered, guest uptime in seconds then.
    pub pings: Vec<(String, bool, f64)>,
    /// Guest uptime (s) when the report started.
    pub uptime: f64,
    /// The network files in the guest: which renderer cloud-init used.
    pub files: Vec<String>,
    /// The resolver lines of those files (`DNS=`, `Domains=`,
    /// `dns-nameservers`, `dns-search`), whichever renderer wrote them.
    pub dns: Vec<String>,
}

impl Report {
    /// `address/prefix` of every global address on `dev`.
    pub fn addresses(&self, dev: &str) -> Vec<String> {
        let mut out = Vec::new();
        for link in self.addr.as_array().into_iter().flatten() {
            if link["ifname"].as_str() != Some(dev) {
                continue;
            }
            for a in link["addr_info"].as_array().into_iter().flatten() {
                if a["scope"].as_str() == Some("global") {
                    out.push(format!(
                        "{}/{}",
                        a["local"].as_str().unwrap_or_default(),
                        a["prefixlen"]
                    ));
                }
            }
        }
        out
    }

    /// The MTU of `dev` as the guest's kernel has it.
    pub fn mtu(&self, dev: &str) -> Option<u64> {
        self.addr
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["ifname"].as_str() == Some(dev))
            .and_then(|l| l["mtu"].as_u64())
    }

    /// The gateway and device of the default route of a family.
    pub fn default_route(&self, v6: bool) -> Option<(String, String)> {
        let routes = if v6 { &self.route6 } else { &self.route4 };
        routes.as_array().into_iter().flatten().find_map(|r| {
            (r["dst"].as_str() == Some("default")).then(|| {
                (
                    r["gateway"].as_str().unwrap_or_default().to_string(),
                    r["dev"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
    }
}

impl Guest {
    /// The console so far (lossy: the kernel may write anything).
    pub fn console_text(&self) -> String {
        std::fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default()
    }

    /// Stop the guest as a hypervisor would (QEMU killed by its PID) and
    /// wait until it is gone, so its tap is free again.
    pub fn stop(&self, lab: &mut Lab, timeout: Duration) -> Result<()> {
        let _ = Command::new("kill").arg(self.pid.to_string()).output();
        let end = Instant::now() + timeout;
        while self.running() {
            if Instant::now() > end {
                return Err(Error::Missing(format!(
                    "guest {}: QEMU {} still runs {timeout:?} after kill",
                    self.name, self.pid
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        lab.untrack(self.pid);
        Ok(())
    }

    /// Whether QEMU still runs.
    pub fn running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// Wait for the guest's whole report (up to its END marker).
    pub fn report(&self, timeout: Duration) -> Result<Report> {
        let end = Instant::now() + timeout;
        loop {
            let text = self.console_text();
            if text.contains(&format!("{MARK}END")) {
                return parse(&text).ok_or_else(|| {
                    Error::Missing(format!(
                        "guest {}: unreadable report on its console:\n{}",
                        self.name,
                        tail(&text)
                    ))
                });
            }
            if Instant::now() > end || !self.running() {
                return Err(Error::Missing(format!(
                    "guest {}: no report within {:?} (QEMU {}); console:\n{}",
                    self.name,
                    timeout,
                    if self.running() { "running" } else { "exited" },
                    tail(&text)
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The report lines of a console; `None` when one is garbled.
fn parse(text: &str) -> Option<Report> {
    let mut r = Report::default();
    for line in text.lines() {
        let Some(at) = line.find(MARK) else { continue };
        let rest = line[at + MARK.len()..].trim_end_matches('\r');
        let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
        match key {
            "UP" => r.uptime = value.trim().parse().ok()?,
            "ADDR" => r.addr = serde_json::from_str(value).ok()?,
            "ROUTE4" => r.route4 = serde_json::from_str(value).ok()?,
            "ROUTE6" => r.route6 = serde_json::from_str(value).ok()?,
            "FILES" => r.files = value.split_whitespace().map(String::from).collect(),
            "DNS" => {
                r.dns = value
                    .split(';')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
            }
            "PING" => {
                let mut f = value.split_whitespace();
                let target = f.next()?.to_string();
                let ok = f.next()? == "yes";
                let at = f.next()?.parse().ok()?;
                r.pings.push((target, ok, at));
            }
            _ => {}
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_report_parses() {
        let text = "[    1.0] noise\r\nVMFABRIC-UP 12.5\r\n\
            VMFABRIC-ADDR [{\"ifname\":\"eth0\",\"mtu\":1400,\"addr_info\":[{\"local\":\"192.0.2.4\",\"prefixlen\":27,\"scope\":\"global\"}]}]\n\
            VMFABRIC-ROUTE4 [{\"dst\":\"default\",\"gateway\":\"192.0.2.1\",\"dev\":\"eth0\"}]\n\
            VMFABRIC-ROUTE6 []\nVMFABRIC-DNS DNS=192.0.2.53;Domains=example.com;\n\
            VMFABRIC-PING 192.0.2.5 yes 20.25\nVMFABRIC-END\n";
        let r = parse(text).expect("parses");
        assert_eq!(r.addresses("eth0"), ["192.0.2.4/27"]);
        assert_eq!(
            r.default_route(false),
            Some(("192.0.2.1".into(), "eth0".into()))
        );
        assert_eq!(r.pings, [("192.0.2.5".to_string(), true, 20.25)]);
        assert_eq!(r.mtu("eth0"), Some(1400));
        assert_eq!(r.dns, ["DNS=192.0.2.53", "Domains=example.com"]);
        assert!(user_data(&["192.0.2.5".parse().expect("ip")]).contains(" 192.0.2.5; do"));
    }
}
