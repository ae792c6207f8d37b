//! The worlds of the lab scenarios, after LAB.md: what the data center
//! provides around vmfabric's nodes. Nodes get only their uplink and, where
//! a provider would give it, the address and default route on it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use crate::{Error, Lab, Result, require};

/// An FRR instance of the lab, in its own namespace and folder.
#[derive(Debug, Clone)]
pub struct Frr {
    pub ns: String,
    /// Config folder and vty sockets.
    pub dir: PathBuf,
}

impl Frr {
    /// `vtysh -c CMD` against this instance.
    pub fn vtysh(&self, lab: &Lab, cmd: &str) -> Result<String> {
        let out = lab
            .exec(&self.ns, "vtysh")
            .arg("--vty_socket")
            .arg(&self.dir)
            .arg("-c")
            .arg(cmd)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

/// Start FRR daemons in `ns` with `conf` (empty for nodes: the agent
/// writes theirs), as LAB.md's recipe does: state in a folder of its own.
pub fn frr_up(lab: &mut Lab, ns: &str, daemons: &[&str], conf: &str) -> Result<Frr> {
    require(&[
        ("vtysh", "frr"),
        ("/usr/lib/frr/frr-reload.py", "frr-pythontools"),
    ])?;
    let dir = lab.dir.join("frr").join(ns);
    std::fs::create_dir_all(&dir)?;
    // The daemons run as user frr: the lab's folders must let them in.
    for d in [lab.dir.clone(), lab.dir.join("frr"), dir.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::write(dir.join("frr.conf"), conf)?;
    std::fs::write(dir.join("vtysh.conf"), "service integrated-vtysh-config\n")?;
    let _ = Command::new("chown")
        .args(["-R", "frr:frr"])
        .arg(&dir)
        .output();
    for d in daemons {
        let pid = dir.join(format!("{d}.pid"));
        let mut c = lab.exec(ns, &format!("/usr/lib/frr/{d}"));
        c.args(["-d", "-u", "frr", "-g", "frr", "-A", "127.0.0.1", "-i"])
            .arg(&pid)
            .arg("-z")
            .arg(dir.join("zserv.api"))
            .arg("--vty_socket")
            .arg(&dir)
            .arg("--log")
            .arg(format!("file:{}", dir.join(format!("{d}.log")).display()));
        if *d == "bgpd" && !daemons.contains(&"zebra") {
            c.arg("-Z");
        }
        let out = c.output()?;
        if !out.status.success() {
            return Err(Error::Command {
                cmd: format!("{d} in {ns}"),
                stderr: String::from_utf8_lossy(&out.stderr).to_string(),
            });
        }
        lab.track_pidfile(&pid)?;
    }
    let frr = Frr {
        ns: ns.to_string(),
        dir: dir.clone(),
    };
    // Apply the boot configuration once the daemons listen.
    let ok = lab.wait_for(std::time::Duration::from_secs(5), || {
        lab.exec(ns, "vtysh")
            .arg("--vty_socket")
            .arg(&dir)
            .arg("--config_dir")
            .arg(&dir)
            .arg("-b")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    });
    if !ok {
        return Err(Error::Missing(format!(
            "FRR in {ns} did not take its configuration"
        )));
    }
    Ok(frr)
}

/// The control socket of the BIRD that [`bird_up`] started in `ns`.
pub fn bird_socket(lab: &Lab, ns: &str) -> PathBuf {
    lab.dir.join("bird").join(ns).join("bird.ctl")
}

/// `birdc CMD` against the BIRD of `ns`.
pub fn birdc(lab: &Lab, ns: &str, cmd: &str) -> Result<String> {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(bird_socket(lab, ns))
        .args(cmd.split_whitespace())
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Start BIRD 2 in `ns` with `conf`.
pub fn bird_up(lab: &mut Lab, ns: &str, conf: &str) -> Result<PathBuf> {
    require(&[("bird", "bird2"), ("birdc", "bird2")])?;
    let dir = lab.dir.join("bird").join(ns);
    std::fs::create_dir_all(&dir)?;
    let conf_path = dir.join("bird.conf");
    std::fs::write(&conf_path, conf)?;
    let sock = bird_socket(lab, ns);
    let pid = dir.join("bird.pid");
    let out = lab
        .exec(ns, "bird")
        .arg("-c")
        .arg(&conf_path)
        .arg("-s")
        .arg(&sock)
        .arg("-P")
        .arg(&pid)
        .output()?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: format!("bird in {ns}"),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        });
    }
    lab.track_pidfile(&pid)?;
    Ok(sock)
}

/// A data-center switch: namespace `dc`, bridge `sw`.
pub fn switch(lab: &mut Lab, short: &str) -> Result<String> {
    let dc = lab.add_ns(short)?;
    lab.ip(&dc, &["link", "add", "sw", "type", "bridge"])?;
    lab.ip(&dc, &["link", "set", "sw", "up"])?;
    Ok(dc)
}

/// A node namespace `short` whose `uplink` is a port `p-<short>` of the
/// switch in `dc`.
pub fn node(lab: &mut Lab, dc: &str, short: &str, uplink: &str) -> Result<String> {
    let ns = lab.add_ns(short)?;
    let port = format!("p-{short}");
    lab.wire(dc, &port, &ns, uplink)?;
    lab.ip(dc, &["link", "set", &port, "master", "sw"])?;
    Ok(ns)
}

/// The MAC of `dev` in `ns`.
pub fn mac(lab: &Lab, ns: &str, dev: &str) -> Result<String> {
    let out = lab.ip(ns, &["-br", "link", "show", dev])?;
    out.split_whitespace()
        .nth(2)
        .map(String::from)
        .ok_or_else(|| Error::Missing(format!("no MAC on {dev} in {ns}")))
}

/// Provider port security on the switch port of a node: frames whose
/// source MAC is not the node's are counted and dropped (LAB.md).
pub fn port_security(lab: &Lab, dc: &str, port: &str, node_mac: &str) -> Result<()> {
    require(&[("nft", "nftables")])?;
    let table = format!("portsec_{}", port.replace('-', "_"));
    let rules = format!(
        "table netdev {table} {{\n chain in {{\n  type filter hook ingress device \"{port}\" priority 0; policy accept;\n  ether saddr != {node_mac} counter drop\n }}\n}}\n"
    );
    let file = lab.dir.join(format!("portsec-{port}.nft"));
    std::fs::write(&file, rules)?;
    lab.sh(dc, &["nft", "-f", &file.to_string_lossy()])?;
    Ok(())
}

/// Packets a drop counter in `ns` has counted (the first `counter packets N`
/// in the listing of `table`).
pub fn counter(lab: &Lab, ns: &str, family: &str, table: &str) -> Result<u64> {
    let out = lab.sh(ns, &["nft", "list", "table", family, table])?;
    Ok(out
        .split("counter packets ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum())
}
