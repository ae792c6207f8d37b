//! A plan that did not come from this controller (`agent --plan FILE`) is
//! checked by the rules the controller builds plans with before anything
//! reaches the kernel: every interface name a valid Linux name (they go
//! into nft rulesets, netlink and sysctl paths), every node, cluster and
//! VM name by the naming rule, every MAC, prefix and community parsed,
//! and sysctls only under `net.ipv4.`/`net.ipv6.` with small numeric
//! values (a key like `kernel.core_pattern` would write outside
//! networking).

use vmfabric_model::names::check_name;
use vmfabric_model::{Error, IfName, Mac, Result};

use crate::NodePlan;

fn ifname(field: String, name: &str) -> Result<()> {
    IfName::new(&field, name).map(|_| ())
}

fn mac(field: String, text: &str) -> Result<()> {
    text.parse::<Mac>()
        .map(|_| ())
        .map_err(|_| Error::invalid(&field, text, "a MAC address, e.g. 52:54:00:12:34:56"))
}

/// `ADDRESS/PREFIX` (host bits may be set: an interface address).
fn cidr(field: String, text: &str) -> Result<()> {
    let ok = text.split_once('/').is_some_and(|(a, l)| {
        let bits = match a.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => 32,
            Ok(std::net::IpAddr::V6(_)) => 128,
            Err(_) => return false,
        };
        l.bytes().all(|b| b.is_ascii_digit()) && l.parse::<u8>().is_ok_and(|n| n <= bits)
    });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(&field, text, "an address with /PREFIX"))
    }
}

impl NodePlan {
    /// Whether this plan could have been built by the controller's rules.
    pub fn check(&self) -> Result<()> {
        check_name("plan.node", &self.node)?;
        check_name("plan.cluster", &self.cluster)?;
        if !matches!(
            self.network_type.as_str(),
            "switching" | "routing" | "ip-fabric"
        ) {
            return Err(Error::invalid(
                "plan.type",
                &self.network_type,
                "switching, routing or ip-fabric",
            ));
        }
        ifname("plan.uplink".into(), &self.uplink)?;
        // ip-fabric nodes have no bridge.
        if !self.bridge.is_empty() || self.network_type == "switching" {
            ifname("plan.bridge".into(), &self.bridge)?;
        }
        for (i, l) in self.links.iter().enumerate() {
            ifname(format!("plan.links[{i}].name"), &l.name)?;
            if let Some(m) = &l.master {
                ifname(format!("plan.links[{i}].master"), m)?;
            }
            if let Some(p) = &l.peer {
                ifname(format!("plan.links[{i}].peer"), p)?;
            }
            if let Some(m) = &l.mac {
                mac(format!("plan.links[{i}].mac"), m)?;
            }
            if let Some(vm) = &l.vm {
                check_name(&format!("plan.links[{i}].vm"), vm)?;
            }
        }
        for (i, a) in self.addresses.iter().enumerate() {
            ifname(format!("plan.addresses[{i}].dev"), &a.dev)?;
            cidr(format!("plan.addresses[{i}].cidr"), &a.cidr)?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            ifname(format!("plan.routes[{i}].dev"), &r.dev)?;
            cidr(format!("plan.routes[{i}].dst"), &r.dst)?;
        }
        for (i, s) in self.sysctls.iter().enumerate() {
            let field = format!("plan.sysctls[{i}]");
            let key_ok = (s.key.starts_with("net.ipv4.") || s.key.starts_with("net.ipv6."))
                && !s.key.contains("..")
                && s.key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !key_ok {
                return Err(Error::invalid(
                    &format!("{field}.key"),
                    &s.key,
                    "vmfabric sets only net.ipv4.* and net.ipv6.* settings",
                ));
            }
            if s.value.is_empty()
                || s.value.len() > 3
                || !s.value.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(Error::invalid(
                    &format!("{field}.value"),
                    &s.value,
                    "a small number",
                ));
            }
        }
        for (i, p) in self.neighbour_proxies.iter().enumerate() {
            ifname(format!("plan.neighbour_proxies[{i}].dev"), &p.dev)?;
        }
        for (i, p) in self.firewall.ports.iter().enumerate() {
            ifname(format!("plan.firewall.ports[{i}].ifname"), &p.ifname)?;
            check_name(&format!("plan.firewall.ports[{i}].vm"), &p.vm)?;
            mac(format!("plan.firewall.ports[{i}].mac"), &p.mac)?;
        }
        if let Some(g) = &self.firewall.uplink_guard {
            ifname("plan.firewall.uplink_guard.dev".into(), &g.dev)?;
            if let Some(m) = &g.mac {
                mac("plan.firewall.uplink_guard.mac".into(), m)?;
            }
        }
        if let Some(b) = &self.bgp {
            check_name("plan.bgp.hostname", &b.hostname)?;
            vmfabric_model::cluster::Community::parse("plan.bgp.community", &b.community)?;
            for (i, p) in b.pool_v4.iter().chain(&b.pool_v6).enumerate() {
                cidr(format!("plan.bgp.pool[{i}]"), p)?;
            }
        }
        if let Some(n) = &self.ndp {
            ifname("plan.ndp.uplink".into(), &n.uplink)?;
            ifname("plan.ndp.bridge".into(), &n.bridge)?;
            cidr("plan.ndp.network".into(), &n.network)?;
        }
        Ok(())
    }
}
